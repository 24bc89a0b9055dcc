import gzip
import os

import numpy as np
import pytest

from mlp_backend.data import (IDXError, Standardizer, find_idx_dir, load_dataset, load_fashion_mnist, read_idx,
                              stratified_split, write_idx)
from mlp_backend.data.datasets import IDX_FILES, SYSTEM_DIRS


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_idx_round_trip(tmp_path, name, dtype):
    arr = (np.arange(60) % 50).astype(dtype).reshape(3, 4, 5)
    write_idx(tmp_path / name, arr)
    out = read_idx(tmp_path / name)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_idx_rejects_malformed_files(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "ok.idx", arr)
    raw = (tmp_path / "ok.idx").read_bytes()
    cases = {
        "magic.idx": (b"\x01" + raw[1:], "bad magic"),
        "type.idx": (raw[:2] + b"\x07" + raw[3:], "unknown IDX data type"),
        "short.idx": (raw[:-1], "expected 24 bytes"),
        "long.idx": (raw + b"\x00", "found more"),
        "header.idx": (raw[:6], "truncated IDX header"),
        "huge.idx": (raw[:4] + b"\xff\xff\xff\xff" * 3, "over the"),
        "empty.idx": (b"", "bad magic"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(IDXError, match=message):
            read_idx(tmp_path / name)
    (tmp_path / "bad.idx.gz").write_bytes(gzip.compress(raw)[:-8])
    with pytest.raises(IDXError):
        read_idx(tmp_path / "bad.idx.gz")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing.idx")


def make_fake_mnist(root, n_train=30, n_test=10):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = IDX_FILES[split]
        write_idx(root / f"{images}.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{labels}.gz", rng.integers(0, 10, n).astype(np.uint8))


def test_fashion_mnist_loader_from_a_named_directory(tmp_path):
    make_fake_mnist(tmp_path)
    data = load_fashion_mnist(tmp_path)
    assert data.X_train.shape == (30, 784) and data.X_test.shape == (10, 784)
    assert data.X_train.dtype == np.float32 and 0 <= data.X_train.min() and data.X_train.max() <= 1
    assert data.class_names[0] == "T-shirt/top" and data.source == str(tmp_path)


def test_missing_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(SYSTEM_DIRS, "fashion-mnist", [])
    monkeypatch.delenv("MLP_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="fashion-mnist IDX files not found; looked in"):
        find_idx_dir("fashion-mnist", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'cifar-100'"):
        load_dataset("cifar-100")


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package():
    data = load_fashion_mnist()
    assert data.X_train.shape == (60000, 784) and data.X_test.shape == (10000, 784)
    assert np.bincount(data.y_train).tolist() == [6000] * 10


def test_standardizer_and_stratified_split():
    rng = np.random.default_rng(0)
    X = rng.normal(3, 2, size=(500, 4))
    X[:, 3] = 1.0  # constant feature
    s = Standardizer().fit(X)
    Z = s.transform(X)
    np.testing.assert_allclose(Z[:, :3].mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(Z[:, :3].std(axis=0), 1, atol=1e-5)
    assert np.all(Z[:, 3] == 0)
    y = np.repeat([0, 1, 2], [100, 200, 300])
    keep, held = stratified_split(y, 0.1, seed=1)
    assert np.bincount(y[held]).tolist() == [10, 20, 30]
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 600
    again, _ = stratified_split(y, 0.1, seed=1)
    np.testing.assert_array_equal(keep, again)


def test_stratified_split_by_count_holds_out_exactly_that_many():
    rng = np.random.default_rng(5)
    y = rng.choice(10, size=73257, p=np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum())  # unbalanced
    keep, held = stratified_split(y, 3257, seed=0)  # SVHN's 70,000 / 3,257 split of its training set
    assert len(held) == 3257 and len(keep) == 70000 and len(np.intersect1d(keep, held)) == 0
    expected = 3257 * np.bincount(y) / y.size
    assert np.all(np.abs(np.bincount(y[held], minlength=10) - expected) < 1)  # proportional, to within one
    for bad in (0, 73257, 1.0, -0.5, True, "3"):
        with pytest.raises(ValueError, match="split size"):
            stratified_split(y, bad)


@pytest.mark.parametrize("defect,message", [
    ("zero", r"t10k-images-idx3-ubyte.gz: no fashion-mnist test images in it \(shape \(0, 28, 28\)\)"),
    ("sizes", r"t10k-images-idx3-ubyte.gz: fashion-mnist test images are 28x28 but the training images are 32x32"),
    ("one class", r"train-labels-idx1-ubyte.gz: every training label is 3"),
    ("count", r"t10k-labels-idx1-ubyte.gz: 10 fashion-mnist test images \(t10k-images-idx3-ubyte.gz\) but labels"),
])
def test_damaged_idx_datasets_are_named_file_by_file(tmp_path, defect, message):
    make_fake_mnist(tmp_path)
    images, labels = IDX_FILES["train" if defect in ("sizes", "one class") else "test"]
    rng = np.random.default_rng(1)
    if defect == "zero":
        write_idx(tmp_path / f"{images}.gz", np.zeros((0, 28, 28), dtype=np.uint8))
    elif defect == "sizes":
        write_idx(tmp_path / f"{images}.gz", rng.integers(0, 256, (30, 32, 32), dtype=np.uint8))
    elif defect == "one class":
        write_idx(tmp_path / f"{labels}.gz", np.full(30, 3, dtype=np.uint8))
    else:
        write_idx(tmp_path / f"{labels}.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(IDXError, match=message):
        load_fashion_mnist(tmp_path)


def test_scalers_round_trip_through_their_recorded_state():
    import json

    from mlp_backend.data import MinMaxScaler, scaler_from_state, scaler_state

    X = np.random.default_rng(2).random((50, 6)).astype(np.float32) * 255
    for scaler in (Standardizer().fit(X), Standardizer(per_feature=False).fit(X), MinMaxScaler().fit(X),
                   MinMaxScaler(0.0, 1.0).fit(X)):
        again = scaler_from_state(json.loads(json.dumps(scaler_state(scaler))))  # as a run's files keep it
        np.testing.assert_array_equal(again.transform(X), scaler.transform(X))
    assert scaler_state(None) is None and scaler_from_state(None) is None
