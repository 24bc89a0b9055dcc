"""Datasets: Fashion-MNIST / MNIST from IDX files, scikit-learn's digits, and synthetic problems.

Each loader returns a :class:`Dataset` of host NumPy arrays (images as float32 in [0, 1]).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .idx import IDXError, read_idx

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
# Where Debian's dataset-fashion-mnist package puts the files.
SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"], "mnist": ["/usr/share/datasets/mnist"]}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple = ()
    source: str = ""
    task: str = "multiclass"

    @property
    def num_features(self) -> int:
        return int(np.prod(self.X_train.shape[1:]))

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.y_train.max()) + 1


def find_idx_dir(name: str, data_dir=None) -> Path:
    """The first directory holding all four IDX files: ``data_dir``, ``$MLP_DATA/<name>``, system dirs."""
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    if os.environ.get("MLP_DATA"):
        candidates.append(Path(os.environ["MLP_DATA"]) / name)
    candidates += [Path(d) for d in SYSTEM_DIRS.get(name, [])]
    for d in candidates:
        if all(_idx_path(d, f) is not None for pair in IDX_FILES.values() for f in pair):
            return d
    looked = ", ".join(str(c) for c in candidates) or "(nowhere)"
    hint = " (on Debian: apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
    raise FileNotFoundError(f"{name} IDX files not found; looked in {looked}. Pass --data-dir DIR{hint}")


def _idx_path(d: Path, stem: str):
    for candidate in (d / f"{stem}.gz", d / stem):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dataset(name: str, data_dir=None, class_names=()) -> Dataset:
    d = find_idx_dir(name, data_dir)
    arrays = {}
    for split, (images, labels) in IDX_FILES.items():
        X, y = read_idx(_idx_path(d, images)), read_idx(_idx_path(d, labels))
        if X.ndim != 3 or X.dtype != np.uint8:
            raise IDXError(f"{name} {split} images must be uint8 of shape (N, rows, cols), got {X.dtype} {X.shape}")
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise IDXError(f"{name} {split}: {X.shape[0]} images but labels of shape {y.shape}")
        if y.size and y.max() > 9:
            raise IDXError(f"{name} {split} labels must be 0..9, found {y.max()}")
        arrays[split] = (X.reshape(X.shape[0], -1).astype(np.float32) / 255.0, y.astype(np.int64))
    return Dataset(name, *arrays["train"], *arrays["test"], class_names=tuple(class_names) or tuple(map(str, range(10))),
                   source=str(d))


def load_fashion_mnist(data_dir=None) -> Dataset:
    return load_idx_dataset("fashion-mnist", data_dir, FASHION_CLASSES)


def load_mnist(data_dir=None) -> Dataset:
    return load_idx_dataset("mnist", data_dir)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images), pixels scaled to [0, 1], stratified split."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    X, y = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset("digits", X[train], y[train], X[test], y[test], tuple(map(str, range(10))), "scikit-learn")


def make_synthetic(n_samples: int = 2000, n_features: int = 20, n_classes: int = 4, seed: int = 0,
                   test_fraction: float = 0.2) -> Dataset:
    """Gaussian blobs, one per class, in ``n_features`` dimensions: separable but not trivially."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3.0, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, n_samples)
    X = (centers[y] + rng.normal(size=(n_samples, n_features))).astype(np.float32)
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset("synthetic", X[train], y[train], X[test], y[test], tuple(map(str, range(n_classes))), "generated")


def stratified_split(y, fraction: float, seed: int = 0):
    """Index arrays ``(keep, held_out)`` holding out ``fraction`` of each class, seeded."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be in (0, 1), got {fraction!r}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(fraction * idx.size))
        held.append(idx[:k])
        keep.append(idx[k:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


class Standardizer:
    """Standardisation fitted on training data: per feature (default; zero-variance features get
    scale 1) or, with ``per_feature=False``, one mean and standard deviation over all values."""

    def __init__(self, per_feature: bool = True):
        self.per_feature = per_feature

    def fit(self, X):
        X = np.asarray(X)
        axis = 0 if self.per_feature else None
        # float64 accumulators without a float64 copy of the data
        self.mean_ = X.mean(axis=axis, dtype=np.float64)
        std = X.std(axis=axis, dtype=np.float64)
        self.scale_ = np.where(std > 1e-8, std, 1.0)
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=np.float32)
        return (X - self.mean_.astype(np.float32)) / self.scale_.astype(np.float32)

    def fit_transform(self, X):
        return self.fit(X).transform(X)


LOADERS = {"fashion-mnist": load_fashion_mnist, "mnist": load_mnist, "digits": load_digits,
           "synthetic": make_synthetic}


def load_dataset(name: str, data_dir=None) -> Dataset:
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    return LOADERS[name](data_dir) if name in ("fashion-mnist", "mnist") else LOADERS[name]()
