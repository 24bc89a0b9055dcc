"""Kernel registry: (op, array library) -> implementation, with the Array API reference as fallback.

``MLP_KERNELS=auto|numba|reference`` (environment) or ``mode=`` (per call) chooses:

- ``auto``: the Numba kernel where the library has one (numpy -> ``cpu.py``, torch CPU tensors ->
  ``torch_cpu.py`` (zero-copy views into ``cpu.py``), cupy -> ``cuda.py``), else the reference.

A fused module overrides only the ops it speeds up (an op it does not define is the reference's), and
each override returns ``NotImplemented`` for inputs it does not handle (dtypes, layouts, devices): the
registry then runs the reference, so an unsupported input gets the reference's result or error, never a
wrong one.
- ``numba``: like ``auto``, but an error when the library has no Numba kernels.
- ``reference``: always the pure Array API code.

Kernel modules are imported on first use, so importing mlp_backend imports neither numba.cuda nor CuPy.
"""
from __future__ import annotations

import functools
import importlib
import os
from types import SimpleNamespace

from . import reference

OPS = (
    "softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "bias_act",
    "act_backward",
    "sgd_update",
    "rmsprop_update",
    "adam_update",
)
MODES = ("auto", "numba", "reference")
FUSED_MODULES = {"numpy": "cpu", "torch": "torch_cpu", "cupy": "cuda"}


def default_mode() -> str:
    return check_mode(os.environ.get("MLP_KERNELS", "auto"))


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"kernel mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def resolve(op: str, library: str, mode: str | None = None):
    """The implementation of ``op`` for arrays of ``library`` ('numpy', 'torch', ...)."""
    if op not in OPS:
        raise ValueError(f"unknown kernel op {op!r}; known: {', '.join(OPS)}")
    mode = check_mode(mode) if mode is not None else default_mode()
    if mode == "reference":
        return getattr(reference, op)
    module = FUSED_MODULES.get(library)
    if module is None:
        if mode == "numba":
            raise ValueError(
                f"no Numba kernels for {library!r} arrays (they exist for {', '.join(FUSED_MODULES)}); "
                "use kernels='auto' or 'reference'"
            )
        return getattr(reference, op)
    fused = getattr(importlib.import_module(f"{__name__}.{module}"), op, None)
    return getattr(reference, op) if fused is None else _with_fallback(fused, getattr(reference, op))


@functools.lru_cache(maxsize=None)
def _with_fallback(fused, ref):
    """``fused``, or ``ref`` where ``fused`` answers NotImplemented."""
    @functools.wraps(ref)
    def op(*args, **kwargs):
        result = fused(*args, **kwargs)
        return ref(*args, **kwargs) if result is NotImplemented else result

    op.fused = fused
    return op


def kernel_set(library: str, mode: str | None = None) -> SimpleNamespace:
    """All ops resolved once for a library, as attributes: ``ks.adam_update(xp, ...)``."""
    mode = check_mode(mode) if mode is not None else default_mode()
    return SimpleNamespace(mode=mode, **{op: resolve(op, library, mode) for op in OPS})
