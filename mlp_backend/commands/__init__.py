"""The ``mlp`` commands, one module each (``add_arguments(parser)`` and ``run(args)``), with the options and
run-folder machinery they share (``options.py``, ``runs.py``); ``mlp_backend.cli`` assembles them."""
