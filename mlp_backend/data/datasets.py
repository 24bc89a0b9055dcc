"""Datasets: Fashion-MNIST / MNIST from IDX files, scikit-learn's digits, and synthetic problems.

Each loader returns a :class:`Dataset` of host NumPy arrays (images as float32 in [0, 1]).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .idx import IDXError, read_idx
from ..types import ArrayLike, PathLike

if TYPE_CHECKING:
    from typing import Self

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
# Where Debian's dataset-fashion-mnist package puts the files.
SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"], "mnist": ["/usr/share/datasets/mnist"]}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass
class Dataset:
    """A dataset's training and test arrays and what describes them; every loader returns one.

    Parameters
    ----------
    name : str
        The dataset's name (``"fashion-mnist"``, ...).
    X_train : numpy.ndarray
        (N, features) float32 training inputs.
    y_train : numpy.ndarray
        (N,) int64 labels (or float targets for regression).
    X_test : numpy.ndarray
        Test inputs.
    y_test : numpy.ndarray
        Test labels or targets.
    class_names : tuple of str, default ()
        A name per class.
    source : str, default ""
        Where the data came from (a folder, "scikit-learn", "synthetic").
    task : str, default "multiclass"
        ``"multiclass"`` or ``"regression"``.
    """
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


def default_data_root() -> Path:
    """Where datasets are looked for and downloaded by default: ``$MLP_DATA``, else ``~/.cache/mlp-backend``."""
    return Path(os.environ.get("MLP_DATA") or Path.home() / ".cache" / "mlp-backend")


def find_idx_dir(name: str, data_dir=None) -> Path:
    """The first directory holding all four IDX files: ``data_dir``, ``<default_data_root()>/<name>``,
    system dirs (Debian's package)."""
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    candidates.append(default_data_root() / name)
    candidates += [Path(d) for d in SYSTEM_DIRS.get(name, [])]
    for d in candidates:
        if all(_idx_path(d, f) is not None for pair in IDX_FILES.values() for f in pair):
            return d
    looked = ", ".join(str(c) for c in candidates) or "(nowhere)"
    hint = " (on Debian: apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
    raise FileNotFoundError(f"{name} IDX files not found; looked in {looked}. Pass --data-dir DIR or --download{hint}")


def _idx_path(d: Path, stem: str):
    for candidate in (d / f"{stem}.gz", d / stem):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dataset(name: str, data_dir: PathLike | None = None, class_names: Sequence[str] = ()) -> Dataset:
    """A dataset from its four IDX files; every defect is an IDXError naming the file and what is wrong."""
    d = find_idx_dir(name, data_dir)
    arrays, image_shape = {}, None
    for split, (images, labels) in IDX_FILES.items():
        x_path, y_path = _idx_path(d, images), _idx_path(d, labels)
        X, y = read_idx(x_path), read_idx(y_path)
        if X.ndim != 3 or X.dtype != np.uint8:
            raise IDXError(f"{x_path}: {name} images must be uint8 of shape (N, rows, cols), got {X.dtype} {X.shape}")
        if 0 in X.shape:
            raise IDXError(f"{x_path}: no {name} {split} images in it (shape {X.shape})")
        if image_shape is not None and X.shape[1:] != image_shape:
            raise IDXError(f"{x_path}: {name} {split} images are {X.shape[1]}x{X.shape[2]} but the training images "
                           f"are {image_shape[0]}x{image_shape[1]}")
        image_shape = X.shape[1:]
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise IDXError(f"{y_path}: {X.shape[0]} {name} {split} images ({x_path.name}) but labels of shape {y.shape}")
        if y.size and y.max() > 9:
            raise IDXError(f"{y_path}: {name} labels must be 0..9, found {y.max()}")
        if split == "train" and np.unique(y).size < 2:
            raise IDXError(f"{y_path}: every training label is {y[0]}: a classifier has nothing to learn from one class")
        arrays[split] = (X.reshape(X.shape[0], -1).astype(np.float32) / 255.0, y.astype(np.int64))
    return Dataset(name, *arrays["train"], *arrays["test"], class_names=tuple(class_names) or tuple(map(str, range(10))),
                   source=str(d))


def load_fashion_mnist(data_dir: PathLike | None = None) -> Dataset:
    """Fashion-MNIST (60,000 training and 10,000 test 28x28 images of 10 clothing classes).

    Parameters
    ----------
    data_dir : str or Path, optional
        A folder with the four IDX files (``.gz`` or not); default: ``$MLP_DATA/<name>`` or
        ``~/.cache/mlp-backend/<name>``, then the Debian package's folder.

    Returns
    -------
    Dataset
        Images flattened to float32 rows in [0, 1], int64 labels, the official train/test split.
    """
    return load_idx_dataset("fashion-mnist", data_dir, FASHION_CLASSES)


def load_mnist(data_dir: PathLike | None = None) -> Dataset:
    """MNIST (60,000 training and 10,000 test 28x28 handwritten digits).

    Parameters
    ----------
    data_dir : str or Path, optional
        A folder with the four IDX files (``.gz`` or not); default: ``$MLP_DATA/<name>`` or
        ``~/.cache/mlp-backend/<name>``, then the Debian package's folder.

    Returns
    -------
    Dataset
        Images flattened to float32 rows in [0, 1], int64 labels, the official train/test split.
    """
    return load_idx_dataset("mnist", data_dir)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images), pixels scaled to [0, 1], stratified split.

    Parameters
    ----------
    test_fraction : float, default 0.2
        The fraction of each class held out as the test set.
    seed : int, default 0
        Seeds the split.

    Returns
    -------
    Dataset
        64 features per image, labels 0-9.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    X, y = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset("digits", X[train], y[train], X[test], y[test], tuple(map(str, range(10))), "scikit-learn")


def make_synthetic(n_samples: int = 2000, n_features: int = 20, n_classes: int = 4, seed: int = 0,
                   test_fraction: float = 0.2, kind: str = "blobs") -> Dataset:
    """Generated problems for quick runs, nothing downloaded.

    Parameters
    ----------
    n_samples : int, default 2000
        Samples in all (training and test).
    n_features : int, default 20
        Features per sample.
    n_classes : int, default 4
        Classes (ignored for ``"regression"``).
    seed : int, default 0
        Seeds the generator and the split.
    test_fraction : float, default 0.2
        The fraction held out as the test set.
    kind : {"blobs", "separable", "regression"}, default "blobs"
        ``blobs``: one Gaussian blob per class, overlapping a little; ``separable``: classes split by random
        hyperplanes through the data (linearly separable); ``regression``: a smooth non-linear function of the
        features plus noise (task ``"regression"``).

    Returns
    -------
    Dataset
        float32 inputs; int64 labels or float32 targets.
    """
    rng = np.random.default_rng(seed)
    if kind == "blobs":
        centers = rng.normal(0, 3.0, size=(n_classes, n_features))
        y = rng.integers(0, n_classes, n_samples)
        X = centers[y] + rng.normal(size=(n_samples, n_features))
    elif kind == "separable":
        X = rng.normal(size=(n_samples, n_features))
        y = np.argmax(X @ rng.normal(size=(n_features, n_classes)), axis=1)
    elif kind == "regression":
        X = rng.normal(size=(n_samples, n_features))
        w = rng.normal(size=n_features) / np.sqrt(n_features)
        y = np.sin(X @ w) + 0.5 * (X[:, 0] ** 2) + 0.1 * rng.normal(size=n_samples)
        idx = rng.permutation(n_samples)
        k = int(round(test_fraction * n_samples))
        test, train = idx[:k], idx[k:]
        X = X.astype(np.float32)
        return Dataset("synthetic-regression", X[train], y[train], X[test], y[test], (), "generated", "regression")
    else:
        raise ValueError(f"unknown synthetic kind {kind!r}; choose blobs, separable or regression")
    X = X.astype(np.float32)
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset(f"synthetic-{kind}" if kind != "blobs" else "synthetic", X[train], y[train], X[test], y[test],
                   tuple(map(str, range(n_classes))), "generated")


def stratified_split(y: ArrayLike, size: float | int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(keep, held_out)``, seeded and stratified by class, as scikit-learn's ``test_size``.

    Parameters
    ----------
    y : array_like
        (N,) class labels.
    size : float or int
        A float in (0, 1) holds out that fraction of each class (rounded per class); an int holds out exactly
        that many samples (per class in proportion, largest remainders first), e.g. SVHN's 3,257 validation
        images of 73,257.
    seed : int, default 0
        Seeds the choice.

    Returns
    -------
    tuple of numpy.ndarray
        ``(keep, held_out)``: row indices.
    """
    y = np.asarray(y)
    counts = {c: int(np.sum(y == c)) for c in np.unique(y)}
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if not 0 < size < y.shape[0]:
            raise ValueError(f"split size must be between 1 and {y.shape[0] - 1} samples, got {size}")
        share = {c: size * n / y.shape[0] for c, n in counts.items()}
        take = {c: int(np.floor(v)) for c, v in share.items()}
        by_remainder = sorted(counts, key=lambda c: take[c] - share[c])  # largest remainder first, stable
        for c in by_remainder[:size - sum(take.values())]:
            take[c] += 1
    elif isinstance(size, (float, np.floating)) and 0.0 < size < 1.0:
        take = {c: int(round(size * n)) for c, n in counts.items()}
    else:
        raise ValueError(f"split size must be a fraction in (0, 1) or a number of samples, got {size!r}")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in counts:
        idx = rng.permutation(np.flatnonzero(y == c))
        held.append(idx[:take[c]])
        keep.append(idx[take[c]:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


# The folder (under default_data_root()) and files of the datasets that are not IDX.
FOLDER_FILES = {"svhn": ("svhn", ("train_32x32.mat", "test_32x32.mat")),
                "cifar10": ("cifar-10-batches-bin",
                            tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",))}


def dataset_folder(name: str, data_dir=None, extra_files=()) -> Path:
    """``data_dir`` (or the default folder of ``name``) after checking that it holds the dataset's files."""
    default, files = FOLDER_FILES[name]
    folder = Path(data_dir) if data_dir is not None else default_data_root() / default
    missing = [f for f in (*files, *extra_files) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{name} files not found in {folder} (missing {', '.join(missing)}). "
                                "Pass --data-dir DIR, set MLP_DATA, or use --download")
    return folder


def load_svhn(data_dir: PathLike, use_extra: bool = False) -> Dataset:
    """SVHN from ``train_32x32.mat`` and ``test_32x32.mat`` (and ``extra_32x32.mat`` when ``use_extra``).

    The coursework split (70,000 train / 3,257 validation / 26,032 test) is a seeded, stratified split of
    the training part: ``mlp train --dataset svhn --val-split 3257`` or ``stratified_split(y, 3257)``.

    Parameters
    ----------
    data_dir : str or Path
        The folder with the ``.mat`` files (see :func:`download_dataset`).
    use_extra : bool, default False
        Add the 531,131 images of the extra split to the training set.

    Returns
    -------
    Dataset
        32x32x3 images as 3,072 float32 features in [0, 1]; labels 0-9 (the files' 10 is digit 0).
    """
    from .formats import read_svhn_mat

    d = dataset_folder("svhn", data_dir, ("extra_32x32.mat",) if use_extra else ())
    X, y = read_svhn_mat(d / "train_32x32.mat")
    if use_extra:
        Xe, ye = read_svhn_mat(d / "extra_32x32.mat")
        X, y = np.concatenate([X, Xe]), np.concatenate([y, ye])
    Xt, yt = read_svhn_mat(d / "test_32x32.mat")
    return Dataset("svhn", X, y, Xt, yt, tuple(map(str, range(10))), str(d))


def load_cifar10(data_dir: PathLike) -> Dataset:
    """CIFAR-10 from its binary release (``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``).

    Parameters
    ----------
    data_dir : str or Path
        The ``cifar-10-batches-bin`` folder.

    Returns
    -------
    Dataset
        32x32x3 images as 3,072 float32 features in [0, 1]; 10 named classes.
    """
    from .formats import CIFAR10_CLASSES, read_cifar10_batch

    d = dataset_folder("cifar10", data_dir)
    parts = [read_cifar10_batch(d / f"data_batch_{i}.bin") for i in range(1, 6)]
    Xt, yt = read_cifar10_batch(d / "test_batch.bin")
    return Dataset("cifar10", np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                   Xt, yt, CIFAR10_CLASSES, str(d))


class MinMaxScaler:
    """Linear map of each feature from its training range to ``[low, high]`` (default [-1, 1]).

    Parameters
    ----------
    low : float, default -1.0
        Where each feature's training minimum goes.
    high : float, default 1.0
        Where each feature's training maximum goes.
    """

    def __init__(self, low: float = -1.0, high: float = 1.0):
        if not low < high:
            raise ValueError(f"MinMaxScaler needs low < high, got {low}, {high}")
        self.low, self.high = low, high

    def fit(self, X: ArrayLike) -> Self:
        """Learn each feature's range from training data.

        Parameters
        ----------
        X : array_like
            (N, features) training inputs.

        Returns
        -------
        MinMaxScaler
            The scaler itself.
        """
        X = np.asarray(X)
        self.min_, span = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
        self.span_ = np.where(span > 0, span, 1.0)
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Map inputs with the fitted ranges.

        Parameters
        ----------
        X : array_like
            (N, features) inputs.

        Returns
        -------
        numpy.ndarray
            The mapped inputs, float32.
        """
        unit = (np.asarray(X, dtype=np.float32) - self.min_) / self.span_
        return (self.low + (self.high - self.low) * unit).astype(np.float32)

    def fit_transform(self, X: ArrayLike) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same data.

        Parameters
        ----------
        X : array_like
            (N, features) training inputs.

        Returns
        -------
        numpy.ndarray
            The mapped inputs.
        """
        return self.fit(X).transform(X)

    def to_dict(self) -> dict:
        """The fitted state as JSON values.

        Returns
        -------
        dict
            What :meth:`from_dict` reads.
        """
        return {"min": np.asarray(self.min_).tolist(), "span": np.asarray(self.span_).tolist(), "low": self.low,
                "high": self.high}

    @classmethod
    def from_dict(cls, d: dict) -> "MinMaxScaler":
        """A fitted scaler from :meth:`to_dict`'s values.

        Parameters
        ----------
        d : dict
            The values :meth:`to_dict` returned.

        Returns
        -------
        MinMaxScaler
            The fitted scaler.
        """
        s = cls(float(d.get("low", -1.0)), float(d.get("high", 1.0)))
        # float32, as fitted on the loaders' float32 data: the transform computes as it did in training
        s.min_, s.span_ = np.asarray(d["min"], dtype=np.float32), np.asarray(d["span"], dtype=np.float32)
        return s


def one_hot(y: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """float32 one-hot rows for integer labels.

    Parameters
    ----------
    y : array_like
        (N,) integer labels in [0, num_classes).
    num_classes : int, optional
        Columns (default: one more than the largest label).

    Returns
    -------
    numpy.ndarray
        (N, num_classes) float32.
    """
    y = np.asarray(y)
    k = int(y.max()) + 1 if num_classes is None else num_classes
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must be in [0, {k - 1}]")
    return np.eye(k, dtype=np.float32)[y]


class Standardizer:
    """Standardisation fitted on training data: ``(X - mean) / std``.

    Parameters
    ----------
    per_feature : bool, default True
        A mean and standard deviation per feature (zero-variance features get scale 1); False: one mean and
        standard deviation over all values (what ``mlp train`` uses for images).
    """

    def __init__(self, per_feature: bool = True):
        self.per_feature = per_feature

    def fit(self, X: ArrayLike) -> Self:
        """Learn the mean and standard deviation from training data.

        Parameters
        ----------
        X : array_like
            (N, features) training inputs.

        Returns
        -------
        Standardizer
            The scaler itself.
        """
        X = np.asarray(X)
        axis = 0 if self.per_feature else None
        # float64 accumulators without a float64 copy of the data
        self.mean_ = X.mean(axis=axis, dtype=np.float64)
        std = X.std(axis=axis, dtype=np.float64)
        self.scale_ = np.where(std > 1e-8, std, 1.0)
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Standardise inputs with the fitted statistics.

        Parameters
        ----------
        X : array_like
            (N, features) inputs.

        Returns
        -------
        numpy.ndarray
            The standardised inputs, float32.
        """
        X = np.asarray(X, dtype=np.float32)
        return (X - self.mean_.astype(np.float32)) / self.scale_.astype(np.float32)

    def fit_transform(self, X: ArrayLike) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same data.

        Parameters
        ----------
        X : array_like
            (N, features) training inputs.

        Returns
        -------
        numpy.ndarray
            The standardised inputs.
        """
        return self.fit(X).transform(X)

    def to_dict(self) -> dict:
        """The fitted state as JSON values.

        Returns
        -------
        dict
            What :meth:`from_dict` reads.
        """
        return {"per_feature": self.per_feature, "mean": np.asarray(self.mean_).tolist(),
                "scale": np.asarray(self.scale_).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Standardizer":
        """A fitted scaler from :meth:`to_dict`'s values.

        Parameters
        ----------
        d : dict
            The values :meth:`to_dict` returned.

        Returns
        -------
        Standardizer
            The fitted scaler.
        """
        s = cls(bool(d["per_feature"]))
        s.mean_, s.scale_ = np.asarray(d["mean"], dtype=np.float64), np.asarray(d["scale"], dtype=np.float64)
        return s


SCALERS = {"standardizer": Standardizer, "minmax": MinMaxScaler}


def scaler_state(scaler) -> dict | None:
    """A fitted Standardizer or MinMaxScaler as JSON values (what a run's model files record), or None."""
    if scaler is None:
        return None
    kind = next(k for k, cls in SCALERS.items() if isinstance(scaler, cls))
    return {"kind": kind, **scaler.to_dict()}


def scaler_from_state(state: dict | None):
    """The scaler ``scaler_state`` recorded, or None."""
    return None if state is None else SCALERS[state["kind"]].from_dict(state)


LOADERS = {"fashion-mnist": load_fashion_mnist, "mnist": load_mnist, "svhn": load_svhn, "cifar10": load_cifar10,
           "digits": load_digits, "synthetic": make_synthetic}
_NEEDS_DIR = ("fashion-mnist", "mnist", "svhn", "cifar10")


def load_dataset(name: str, data_dir: PathLike | None = None) -> Dataset:
    """A dataset by name.

    Parameters
    ----------
    name : str
        ``"fashion-mnist"``, ``"mnist"``, ``"svhn"``, ``"cifar10"`` (read from files), ``"digits"`` or
        ``"synthetic"`` (no files).
    data_dir : str or Path, optional
        The folder of a file-based dataset (see :func:`load_fashion_mnist`); ignored by the others.

    Returns
    -------
    Dataset
        The dataset, with its official split.
    """
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    return LOADERS[name](data_dir) if name in _NEEDS_DIR else LOADERS[name]()
