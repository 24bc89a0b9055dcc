"""One class per array library, each in its own module, and the factory that picks one by name.

``base.Backend`` is the Array API behaviour every library shares; ``NumpyBackend``, ``StrictBackend``,
``TorchBackend`` and ``CupyBackend`` override what their library does differently (devices, transfers,
``out=``, random draws on the device, their fused kernels, how their arrays travel between ranks). Adding a
library is one module with one class and one entry in ``CLASSES``. Importing this package imports neither CuPy
nor torch: a class imports its library when a backend of it is made.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from .base import DTYPES, Backend, Tape, Workspace
from .cupy import CupyBackend
from .numpy import NumpyBackend
from .strict import StrictBackend
from .torch import TorchBackend
from ..types import ArrayLike

CLASSES: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Make a Backend class a backend by its ``name`` (``get_backend(name)``, ``--backend``), with its fused kernels.

    Parameters
    ----------
    cls : type
        A subclass of ``mlp_backend.backends.base.Backend`` with a ``name``.

    Returns
    -------
    type
        ``cls`` itself, so it can decorate the class.
    """
    CLASSES[cls.name] = cls
    if cls.fused_kernels:
        kernels.register_fused(cls.name, cls.fused_kernels)
    return cls


for _cls in (NumpyBackend, StrictBackend, TorchBackend, CupyBackend):
    register(_cls)
BACKENDS = tuple(CLASSES)


def backend_class(x) -> type[Backend]:
    """The class of the library ``x`` is an array of; TypeError for anything else."""
    for cls in CLASSES.values():
        try:
            if cls.owns(x):
                return cls
        except ImportError:  # the library is not installed: x cannot be one of its arrays
            continue
    raise TypeError(f"expected an array of one of {', '.join(CLASSES)}, got {type(x).__name__}")


def library_name(x) -> str:
    """Backend name of an array ('numpy', 'torch', ...); raises TypeError for anything else."""
    return backend_class(x).name


def to_numpy(x: ArrayLike) -> np.ndarray:
    """A host NumPy copy (or view, for NumPy input) of any supported array, from any device.

    Parameters
    ----------
    x : array
        A NumPy, CuPy, torch or array-api-strict array.

    Returns
    -------
    numpy.ndarray
        The values on the host.
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple, int, float, np.generic)):
        return np.asarray(x)
    return backend_class(x).host_copy(x)


def get_backend(name: str | Backend = "numpy", device: str | int | None = None, dtype: str = "float32",
                seed: int | None = 0) -> Backend:
    """A Backend from a name.

    Parameters
    ----------
    name : str or Backend, default "numpy"
        ``"numpy"``, ``"array_api_strict"``, ``"torch"``, ``"cupy"`` or a registered backend's name; a
        Backend instance is returned as is.
    device : str or int, optional
        The library's device (``"cuda:0"`` for torch, a GPU number for CuPy).
    dtype : {"float32", "float64"}, default "float32"
        The floating dtype of the arrays it makes.
    seed : int or None, default 0
        Seeds its generator (initialisation, shuffles, dropout).

    Returns
    -------
    Backend
        The backend.
    """
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name or a Backend, got {type(name).__name__}")
    if name not in CLASSES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(CLASSES)}")
    return CLASSES[name](device=device, dtype=dtype, seed=seed)


def available_backends() -> list[str]:
    """Backends whose library imports here (CuPy also needs a working CUDA device).

    Returns
    -------
    list of str
        Their names.
    """
    found = []
    for name in CLASSES:
        try:
            get_backend(name)
        except (ImportError, RuntimeError):
            continue
        found.append(name)
    return found


__all__ = ["Backend", "Tape", "Workspace", "DTYPES", "CLASSES", "BACKENDS", "register", "backend_class", "library_name",
           "to_numpy", "get_backend", "available_backends", "NumpyBackend", "StrictBackend", "TorchBackend",
           "CupyBackend"]
