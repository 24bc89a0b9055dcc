"""Loaders for SVHN (.mat, read with scipy) and CIFAR-10 (binary release), validated before use."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_RECORD = 1 + 3 * 32 * 32


class DataFormatError(ValueError):
    """A dataset file has the wrong structure, shape, dtype or label range."""


def read_svhn_mat(path):
    """``(X, y)`` from an SVHN ``*_32x32.mat``: X (N, 3072) float32 in [0, 1] (HWC order), y in 0..9."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    try:
        mat = loadmat(path, variable_names=["X", "y"])  # MATLAB v5 format; scipy never unpickles
    except FileNotFoundError:
        raise
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError, EOFError, IndexError, KeyError) as e:
        # scipy reports damaged files through many exception types
        raise DataFormatError(f"{path}: not a readable SVHN .mat file ({type(e).__name__}: {e})") from None
    if "X" not in mat or "y" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataFormatError(f"{path}: SVHN files hold variables 'X' and 'y', found {found}")
    X, y = mat["X"], mat["y"]
    if X.dtype != np.uint8 or X.ndim != 4 or X.shape[:3] != (32, 32, 3):
        raise DataFormatError(f"{path}: X must be uint8 of shape (32, 32, 3, N), got {X.dtype} {X.shape}")
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != X.shape[3]:
        raise DataFormatError(f"{path}: {X.shape[3]} images but {y.shape[0]} labels")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataFormatError(f"{path}: SVHN labels must be 1..10, found {y.min()}..{y.max()}")
    images = np.moveaxis(X, 3, 0).reshape(X.shape[3], -1).astype(np.float32) / 255.0
    return images, (y % 10).astype(np.int64)  # label 10 is the digit 0


def read_cifar10_batch(path):
    """``(X, y)`` from a CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (CHW)."""
    path = Path(path)
    data = path.read_bytes()
    if not data or len(data) % _CIFAR_RECORD:
        raise DataFormatError(f"{path}: {len(data)} bytes is not a whole number of {_CIFAR_RECORD}-byte records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    y = records[:, 0].astype(np.int64)
    if y.max() > 9:
        raise DataFormatError(f"{path}: CIFAR-10 labels must be 0..9, found {y.max()}")
    return records[:, 1:].astype(np.float32) / 255.0, y
