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
import warnings
from types import SimpleNamespace

from . import reference

OPS = (
    "softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "bias_act",
    "act_backward",
    "optimizer_update",
    "gather_batch",
    "count_correct",
    "record_step",
    "l2_penalty",
    "norm_forward",
    "norm_backward",
)
MODES = ("auto", "numba", "reference")
FUSED_MODULES: dict[str, str] = {}  # library -> its module here, as each backend class registers it


def register_fused(library: str, module: str):
    """``library``'s arrays get the kernels of ``module`` (``cpu``, ``torch_cpu``, ``cuda``) in modes auto/numba."""
    FUSED_MODULES[library] = module


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
    module = fused_module(library, required=mode == "numba")
    fused = getattr(module, op, None) if module is not None else None
    if fused is None:
        return getattr(reference, op)
    return _with_fallback(fused, getattr(reference, op), getattr(module, f"bind_{op}", None))


def bind(op, *args, **kwargs):
    """``op(*args, **kwargs)`` as a call without arguments that does the same on these very arrays, with the op's
    checks and its choice of kernel made now: for a training step that makes the same call every time. The
    fused module's ``bind_<op>`` makes it; None where the module has none or the arrays are not its to run
    (then call the op itself every time: its checks and the reference's fallback run each time)."""
    binder = getattr(op, "bind", None)
    return None if binder is None else binder(*args, **kwargs)


_UNAVAILABLE: dict[str, str] = {}  # library -> why its fused module did not load (warned once)


def fused_module(library: str, required: bool = False):
    """The fused kernel module for ``library``, or None where it has none or it cannot load.

    A module that fails to import or initialise (say numba-cuda against a NumPy it does not support) must
    not take training down: the reference runs instead, after one warning that names the cause and the fix.
    With ``required`` (mode 'numba') either absence is an error.
    """
    name = FUSED_MODULES.get(library)
    if name is None:
        if required:
            raise ValueError(f"no Numba kernels for {library!r} arrays (they exist for {', '.join(FUSED_MODULES)}); "
                             "use kernels='auto' or 'reference'")
        return None
    if library not in _UNAVAILABLE:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except Exception as e:  # any failure: an import error, a broken binary dependency, a driver problem
            _UNAVAILABLE[library] = _explain(library, name, e)
            warnings.warn(_UNAVAILABLE[library], RuntimeWarning, stacklevel=3)
    if required:
        raise ValueError(_UNAVAILABLE[library])
    return None


def _explain(library, name, error) -> str:
    cause = f"{type(error).__name__}: {error}"
    fix = "reinstall numba (and numba-cuda for CuPy: the cuda12/cuda13 extra)"
    if "row_stack" in str(error):  # numba-cuda <= 0.30 against NumPy 2.5, which removed np.row_stack
        import numpy

        fix = f"numba-cuda fails with NumPy {numpy.__version__}: install 'numpy<2.5' or a numba-cuda that supports it"
    return (f"mlp-backend: the Numba kernels for {library} arrays (kernels/{name}.py) cannot load ({cause}); "
            f"using the reference kernels. Fix: {fix}")


def describe(library: str, mode: str | None = None) -> str:
    """Which kernels ``library`` arrays get in ``mode``, for people: 'numba (cpu.py)', 'reference (...)'."""
    mode = check_mode(mode) if mode is not None else default_mode()
    if mode == "reference":
        return "reference"
    module = fused_module(library, required=mode == "numba")
    if module is None:
        why = _UNAVAILABLE.get(library)
        return "reference (Numba kernels unavailable)" if why else f"reference (no Numba kernels for {library})"
    return f"numba ({FUSED_MODULES[library]}.py)"


@functools.lru_cache(maxsize=None)
def _with_fallback(fused, ref, binder=None):
    """``fused``, or ``ref`` where ``fused`` answers NotImplemented; ``binder``: its ``bind_<op>`` (see ``bind``)."""
    @functools.wraps(ref)
    def op(*args, **kwargs):
        result = fused(*args, **kwargs)
        return ref(*args, **kwargs) if result is NotImplemented else result

    op.fused, op.bind = fused, binder
    return op


def kernel_set(library: str, mode: str | None = None) -> SimpleNamespace:
    """All ops resolved once for a library, as attributes: ``ks.optimizer_update(xp, 'adam', ...)``."""
    mode = check_mode(mode) if mode is not None else default_mode()
    return SimpleNamespace(mode=mode, used=describe(library, mode), **{op: resolve(op, library, mode) for op in OPS})
