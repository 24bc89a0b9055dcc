"""The layer protocol: a small forward/backward pair over arrays of one backend.

A layer declares the shapes of its trainable parameters (``param_shapes``); its container hands it
views into one flat parameter buffer and one flat gradient buffer (``bind``). ``forward`` keeps
what ``backward`` needs; ``backward`` *writes* (does not accumulate) the parameter gradients into
the gradient views and returns the gradient with respect to the input.

While a step program runs, ``workspace`` is its :class:`~mlp_backend.backend.Workspace`: a layer that takes
its output and saved arrays from ``scratch`` then allocates nothing from its second step on. Outside a
step (``predict``, a user's own loop) ``scratch`` answers None and every call returns new arrays.
"""
from __future__ import annotations


class Layer:
    kind = "layer"
    workspace = None  # set by the step program for the length of a step
    # whether a training step's work in this layer is all calls it planned (``Workspace.run``); a step replayed as
    # its bound calls (``StepCalls``) makes another layer's forward and backward whole, as host calls
    plans_its_step = False

    def scratch(self, name: str, shape, dtype=None):
        """This layer's reused array ``name`` while a step program runs, else None (allocate as usual)."""
        ws = self.workspace
        return None if ws is None else ws.get(self, name, tuple(shape), dtype)

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}  # non-trainable state saved with the model (BatchNorm statistics)
        self.be = None
        self.ops = None

    # -- structure --------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_features(self, in_features: int | None) -> int | None:
        return in_features

    def config(self) -> dict:
        """Constructor arguments, JSON-serialisable: ``type(layer)(**layer.config())`` rebuilds it."""
        return {}

    # -- binding to a backend ---------------------------------------------------------------
    def bind(self, be, ops, params: dict, grads: dict):
        self.be, self.ops, self.params, self.grads = be, ops, params, grads
        self.buffers = {k: be.asarray(v) for k, v in self.host_buffers().items()}

    def host_buffers(self) -> dict:
        """Buffers as host arrays, used to carry them across backends (default: initial values)."""
        from ..backend import to_numpy

        return {k: to_numpy(v) for k, v in self.buffers.items()} or self.initial_buffers()

    def initial_buffers(self) -> dict:
        return {}

    def init_params(self):
        """Write initial values into the parameter views (the container calls this once)."""

    # -- computation ------------------------------------------------------------------------
    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy, need_input_grad: bool = True):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
