"""Checks at the public boundary: every bad input becomes a ValueError or TypeError that names it."""
from __future__ import annotations

import math

import numpy as np

from .backend import library_name, to_numpy


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _host_array(name, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{name} cannot be read as an array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _check_range(name, arr, dtype: str):
    """Values the model's dtype cannot hold are the input's problem, named as such (not a learning rate's)."""
    limit = np.finfo(np.dtype(dtype)).max
    if arr.dtype.kind == "f" and arr.dtype.itemsize > np.dtype(dtype).itemsize and arr.size:
        largest = float(np.abs(arr).max())
        if largest > limit:
            raise ValueError(f"{name} has values up to {largest:.3g}, beyond {dtype}'s range ({limit:.3g}): scale "
                             "the inputs (a Standardizer), or train in float64")


def check_X(model, X, name: str = "X"):
    """``(X on the model's device in its dtype, whether X came from the host)``; validates shape and values."""
    be = model.be
    host = not _is_backend_array(X)
    if host:
        arr = _host_array(name, X)
    else:
        be.check_same(X, name)
        arr = X
    if arr.ndim < 2:
        raise ValueError(f"{name} must be 2-D (samples, features) or more, got shape {tuple(arr.shape)}; "
                         "reshape a single sample with x.reshape(1, -1)")
    n, features = arr.shape[0], math.prod(arr.shape[1:])
    if n == 0:
        raise ValueError(f"{name} has 0 samples")
    if features == 0:
        raise ValueError(f"{name} has 0 features")
    if model.in_features is not None and features != model.in_features:
        raise ValueError(f"{name} has {features} features per sample but the model expects {model.in_features}")
    if host:
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinity")
        _check_range(name, arr, be.dtype)
        return be.asarray(np.ascontiguousarray(arr)), True
    xp = be.xp
    if not _is_floating(xp, arr):
        arr = xp.astype(arr, be.float_dtype())
    if not bool(xp.all(xp.isfinite(arr))):
        raise ValueError(f"{name} contains NaN or infinity")
    return be.asarray(arr), False


def check_y(model, loss, y, n: int, name: str = "y"):
    """Targets validated for the loss's task, on the model's device (int64 labels or float targets)."""
    arr = _host_array(name, to_numpy(y) if _is_backend_array(y) else y)
    if arr.shape[:1] != (n,):
        raise ValueError(f"{name} has {arr.shape[0] if arr.ndim else 0} samples but X has {n}")
    if loss.task == "regression":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinity")
        return model.be.asarray(arr)
    classes = model.out_features
    if loss.task == "binary":
        if not np.all(np.isin(arr, (0, 1))):
            raise ValueError(f"{name} must hold 0/1 labels for binary cross-entropy")
        return model.be.asarray(arr.reshape(n, -1))
    if arr.ndim == 2:  # one-hot or probability targets
        if arr.shape[1] != classes:
            raise ValueError(f"{name} has {arr.shape[1]} columns but the model has {classes} outputs")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"{name} must hold non-negative finite class probabilities")
        return model.be.asarray(arr)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels or 2-D one-hot targets, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold integer class labels, got non-integer floats")
    if arr.size and (arr.min() < 0 or arr.max() >= classes):
        raise ValueError(f"{name} labels must be in [0, {classes - 1}] for a model with {classes} outputs, "
                         f"got values from {arr.min()} to {arr.max()}")
    return model.be.asarray_int(arr.astype(np.int64))


def _is_backend_array(x) -> bool:
    if isinstance(x, (np.ndarray, list, tuple, np.generic, int, float)):
        return False
    try:
        library_name(x)
    except TypeError:
        return False
    return True


def _is_floating(xp, arr) -> bool:
    return arr.dtype in (xp.float32, xp.float64)
