"""The ``mlp`` command line: one module per command in ``mlp_backend/commands/`` (and ``bench``, ``export``),
each with ``add_arguments(parser)`` and ``run(args)``.

``mlp train`` (default: 784-500-250-100-10 ReLU, Adam 1e-3, batch 64, Fashion-MNIST) writes a run folder;
``evaluate``, ``sweep``, ``tune``, ``plot``, ``gradcheck``, ``datasets``, ``parity``, ``bench`` and ``export`` do the
rest. Options may come from a TOML file (``--config``); flags given on the command line win.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .commands.runs import read_history_csv  # noqa: F401  (part of this module's interface)

# name -> the module that defines it (add_arguments, run, HELP and, optionally, DESCRIPTION)
COMMANDS = {name: f"mlp_backend.commands.{name}"
            for name in ("train", "evaluate", "sweep", "tune", "plot", "gradcheck", "datasets", "parity")}
COMMANDS.update(bench="mlp_backend.bench", export="mlp_backend.export.command")


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in its help, unless it has none (None) or the help already says it."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Errors as one line (``mlp train: error: ...``, exit 2), without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``mlp`` parser; ``parser.commands`` maps each command's name to its sub-parser."""
    parser = _Parser(prog="mlp", description="Train multi-layer perceptrons on any Array API backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = {}
    for name, path in COMMANDS.items():
        module = importlib.import_module(path)
        # every command's --help shows each option's default
        p = parser.commands[name] = sub.add_parser(name, help=module.HELP,
                                                   description=getattr(module, "DESCRIPTION", None),
                                                   formatter_class=_HelpWithDefaults)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def _typed(argv, args) -> dict:
    """The options ``argv`` sets itself (not their defaults): parsed again with every default replaced by a
    marker (parser-level defaults win over the arguments' own)."""
    parser, unset = build_parser(), object()
    parser.commands[args.command].set_defaults(**{k: unset for k in vars(args)})
    typed = vars(parser.parse_args(argv))
    return {k: v for k, v in typed.items() if v is not unset and k not in ("func", "command")}


def _toml_argv(path: str, error) -> list[str]:
    """A TOML file of options as command-line tokens (keys as the long flags), to go before the typed ones."""
    import tomllib

    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        error(f"cannot read --config {path}: {e}")
    tokens = []
    for key, value in config.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            tokens += [flag] if value else []  # a switch; false is its default
        elif isinstance(value, list):
            tokens += [flag, ",".join(map(str, value))]
        else:
            tokens += [flag, str(value)]
    return tokens


def parse_args(argv=None):
    """Parse flags, taking defaults from ``--config FILE.toml`` where given (flags still win)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        at = argv.index(args.command) + 1
        argv = argv[:at] + _toml_argv(args.config, parser.error) + argv[at:]
        args = parser.parse_args(argv)
    if args.command == "train" and args.resume:  # the run's own options, and only those
        from .commands.train import resume_args

        args = resume_args(args, _typed(argv, args), parser.commands["train"].error)
    return args


def _end_other_ranks(code: int):
    """In an MPI launch of several processes, a failing rank ends them all: the others would wait forever in
    their next collective."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized() and mpi.COMM_WORLD.Get_size() > 1:
        import time

        sys.stderr.flush()
        time.sleep(0.5)  # the launcher forwards this rank's error line before the abort ends every process
        mpi.COMM_WORLD.Abort(code)


def main(argv=None) -> int:
    args = parse_args(argv)
    run = args.func
    del args.func
    try:
        result = run(args)
    except (ValueError, TypeError, KeyError, OSError, ImportError, FloatingPointError) as e:  # incl. DownloadError
        print(f"mlp: error: {e}", file=sys.stderr)
        _end_other_ranks(2)
        return 2
    except KeyboardInterrupt:
        print("mlp: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
