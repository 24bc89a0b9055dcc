import gzip
import hashlib
import http.server
import io
import tarfile
import threading
from functools import partial

import numpy as np
import pytest
from scipy.io import savemat

from mlp_backend.data import (DataFormatError, DownloadError, MinMaxScaler, download_dataset, download_idx_dataset,
                              fetch, load_cifar10, load_dataset, load_svhn, make_synthetic, one_hot,
                              read_cifar10_batch, read_svhn_mat, write_idx)
from mlp_backend.data.datasets import IDX_FILES


def test_svhn_loader_and_its_validation(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 5), ("extra", 3)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": rng.integers(1, 11, (n, 1))})
    data = load_svhn(tmp_path, use_extra=True)
    assert data.X_train.shape == (15, 3072) and data.X_test.shape == (5, 3072)
    assert data.y_train.min() >= 0 and data.y_train.max() <= 9
    X, y = read_svhn_mat(tmp_path / "test_32x32.mat")
    raw = np.moveaxis(__import__("scipy.io").io.loadmat(tmp_path / "test_32x32.mat")["X"], 3, 0)
    np.testing.assert_allclose(X[0], raw[0].reshape(-1) / 255.0, rtol=1e-6)
    bad = tmp_path / "bad.mat"
    savemat(bad, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [11]])})
    with pytest.raises(DataFormatError, match="labels must be 1..10"):
        read_svhn_mat(bad)
    savemat(bad, {"X": np.zeros((28, 28, 2), np.uint8), "y": np.array([[1], [2]])})
    with pytest.raises(DataFormatError, match=r"shape \(32, 32, 3, N\)"):
        read_svhn_mat(bad)
    savemat(bad, {"images": np.zeros(3)})
    with pytest.raises(DataFormatError, match="variables 'X' and 'y'"):
        read_svhn_mat(bad)
    data = (tmp_path / "train_32x32.mat").read_bytes()
    for cut in (10, 100, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(DataFormatError):
            read_svhn_mat(bad)


def test_cifar10_loader_and_its_validation(tmp_path):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, 4, dtype=np.uint8)
        pixels = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        (tmp_path / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
    data = load_cifar10(tmp_path)
    assert data.X_train.shape == (20, 3072) and data.X_test.shape == (4, 3072)
    assert data.class_names[0] == "airplane"
    raw = (tmp_path / "test_batch.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[:-1])
    with pytest.raises(DataFormatError, match="whole number of 3073-byte records"):
        read_cifar10_batch(tmp_path / "cut.bin")
    (tmp_path / "label.bin").write_bytes(bytes([12]) + raw[1:3073])
    with pytest.raises(DataFormatError, match="labels must be 0..9"):
        read_cifar10_batch(tmp_path / "label.bin")


@pytest.fixture
def http_root(tmp_path):
    """A loopback HTTP server over a temporary folder; yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_verifies_checksums_and_never_leaves_partial_files(tmp_path, http_root):
    served, base = http_root
    rng = np.random.default_rng(2)
    checksums = {}
    for split, n in (("train", 8), ("test", 4)):
        images, labels = IDX_FILES[split]
        write_idx(served / f"{images}.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(served / f"{labels}.gz", rng.integers(0, 10, n).astype(np.uint8))
        for stem in (images, labels):
            checksums[f"{stem}.gz"] = hashlib.sha256((served / f"{stem}.gz").read_bytes()).hexdigest()
    folder = download_idx_dataset("mnist", tmp_path / "data", base_url=base, checksums=checksums)
    data = load_dataset("mnist", folder)
    assert data.X_train.shape == (8, 784)
    # a corrupted file on the server: an error, and nothing under the final name
    target = tmp_path / "data2" / "train-images-idx3-ubyte.gz"
    (served / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"corrupted"))
    with pytest.raises(DownloadError, match="does not match"):
        fetch(base + "train-images-idx3-ubyte.gz", target, checksums["train-images-idx3-ubyte.gz"])
    assert not target.exists() and list(target.parent.iterdir()) == []
    with pytest.raises(DownloadError, match="more than 5 bytes"):
        fetch(base + "train-labels-idx1-ubyte.gz", target, "0" * 64, max_bytes=5)
    with pytest.raises(DownloadError, match="download failed"):
        fetch(base + "missing.gz", target, "0" * 64)
    with pytest.raises(ValueError, match="no IDX download for 'svhn'"):
        download_idx_dataset("svhn", tmp_path)
    with pytest.raises(ValueError, match="no download for 'digits'"):
        download_dataset("digits", tmp_path)


def _cifar_archive(path, members):
    """A tar.gz with the given {name: bytes} members."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_svhn_and_cifar10_downloads_verify_and_load(tmp_path, http_root):
    served, base = http_root
    rng = np.random.default_rng(3)
    for split, n in (("train", 6), ("test", 3)):
        savemat(served / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                "y": rng.integers(1, 11, (n, 1))})
    digests = {f: hashlib.sha256((served / f).read_bytes()).hexdigest() for f in ("train_32x32.mat", "test_32x32.mat")}
    folder = download_dataset("svhn", tmp_path / "data", base_url=base, checksums=digests)
    assert folder == tmp_path / "data" / "svhn"
    assert load_svhn(folder).X_train.shape == (6, 3072)

    records = {f"cifar-10-batches-bin/{name}": rng.integers(0, 10, (2, 3073), dtype=np.uint8).tobytes()
               for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]}
    records["cifar-10-batches-bin/batches.meta.txt"] = b"airplane\n"
    records["../outside.txt"] = b"a crafted member: never extracted"
    _cifar_archive(served / "cifar-10-binary.tar.gz", records)
    digest = {"cifar-10-binary.tar.gz": hashlib.sha256((served / "cifar-10-binary.tar.gz").read_bytes()).hexdigest()}
    folder = download_dataset("cifar10", tmp_path / "data", base_url=base, checksums=digest)
    assert folder == tmp_path / "data" / "cifar-10-batches-bin"
    data = load_cifar10(folder)
    assert data.X_train.shape == (10, 3072) and data.X_test.shape == (2, 3072)
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "data" / "outside.txt").exists()
    # an archive that lacks a batch, or is not a tar.gz at all, is an error naming the archive
    del records["cifar-10-batches-bin/test_batch.bin"]
    _cifar_archive(served / "cifar-10-binary.tar.gz", records)
    digest = {"cifar-10-binary.tar.gz": hashlib.sha256((served / "cifar-10-binary.tar.gz").read_bytes()).hexdigest()}
    with pytest.raises(DownloadError, match="no cifar-10-batches-bin/test_batch.bin"):
        download_dataset("cifar10", tmp_path / "data2", base_url=base, checksums=digest)
    (served / "cifar-10-binary.tar.gz").write_bytes(b"not gzip")
    digest = {"cifar-10-binary.tar.gz": hashlib.sha256(b"not gzip").hexdigest()}
    with pytest.raises(DownloadError, match="not a readable tar.gz"):
        download_dataset("cifar10", tmp_path / "data3", base_url=base, checksums=digest)


def test_missing_svhn_or_cifar10_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"svhn files not found .*missing train_32x32.mat.*--download"):
        load_svhn(tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar10 files not found .*data_batch_1.bin"):
        load_cifar10(tmp_path)


def test_preprocessing_helpers():
    X = np.array([[0.0, 5.0], [10.0, 5.0], [5.0, 5.0]])
    Z = MinMaxScaler().fit_transform(X)
    np.testing.assert_allclose(Z[:, 0], [-1, 1, 0])
    assert np.all(Z[:, 1] == -1)  # constant feature maps to the low end, no division by zero
    np.testing.assert_array_equal(one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError):
        one_hot([3], 3)
    for kind in ("blobs", "separable", "regression"):
        data = make_synthetic(n_samples=200, kind=kind)
        assert data.X_train.shape[0] + data.X_test.shape[0] == 200
    assert make_synthetic(kind="regression").task == "regression"


def test_cli_download_verifies_against_the_canonical_checksums(tmp_path, http_root, monkeypatch):
    """--download fetches from the mirror; files that are not the canonical ones are refused (exit 2)."""
    import subprocess
    import sys

    served, base = http_root
    for split in ("train", "test"):
        for stem in IDX_FILES[split]:
            write_idx(served / f"{stem}.gz", np.zeros(3, np.uint8))
    env = {**__import__("os").environ, "MLP_MIRROR": base, "MLP_DATA": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", "train", "--dataset", "mnist", "--download",
                           "--epochs", "1", "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert "does not match the expected" in done.stderr and "Traceback" not in done.stderr
    assert not any((tmp_path / "data" / "mnist").glob("*.gz"))  # nothing kept under a final name
    (served / "cifar-10-binary.tar.gz").write_bytes(b"not the canonical archive")
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", "train", "--dataset", "cifar10", "--download",
                           "--epochs", "1", "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert "cifar-10-binary.tar.gz: SHA-256" in done.stderr and "Traceback" not in done.stderr


def test_default_data_root_is_mlp_data_else_the_user_cache(tmp_path, monkeypatch):
    from mlp_backend.data import default_data_root

    monkeypatch.setenv("MLP_DATA", str(tmp_path / "d"))
    assert default_data_root() == tmp_path / "d"
    monkeypatch.delenv("MLP_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_root() == tmp_path / "home" / ".cache" / "mlp-backend"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "home" / ".cache" / "mlp-backend" / "svhn")):
        load_svhn(None)  # looked for under the default root
