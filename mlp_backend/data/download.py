"""Downloads with SHA-256 checks, bounded size and atomic placement (no partial file under the final name)."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from .datasets import FOLDER_FILES
from ..types import PathLike

# Canonical files with their SHA-256 and size in bytes. The MNIST, SVHN and CIFAR-10 checksums agree across
# several independent public sources; the Fashion-MNIST ones come from one (none could be checked here
# against the real files: this project's machines cannot reach the hosts).
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "svhn": "http://ufldl.stanford.edu/housenumbers/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
    "svhn": {
        "train_32x32.mat": "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
        "test_32x32.mat": "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
    },
    "svhn-extra": {
        "extra_32x32.mat": "a133a4beb38a00fcdda90c9489e0c04f900b660ce8a316a5e854838379a71eb3",
    },
    "cifar10": {
        "cifar-10-binary.tar.gz": "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    },
}
SIZES = {"train_32x32.mat": 182_040_794, "test_32x32.mat": 64_275_384, "extra_32x32.mat": 1_329_278_602,
         "cifar-10-binary.tar.gz": 170_052_171}
MAX_DOWNLOAD_BYTES = 200 << 20  # files of unknown size (the IDX ones are < 30 MB)
# The members of the CIFAR-10 archive that are extracted: the loader's files and the class names, nothing else.
CIFAR10_DIR, _CIFAR10_FILES = FOLDER_FILES["cifar10"]
CIFAR10_MEMBERS = (*_CIFAR10_FILES, "batches.meta.txt")


class DownloadError(OSError):
    """A download failed, was too large, or did not match its checksum."""


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest, sha256: str, max_bytes: int = MAX_DOWNLOAD_BYTES, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right SHA-256 is already there."""
    dest = Path(dest)
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(1 << 20):
                size += len(block)
                if size > max_bytes:
                    raise DownloadError(f"{url}: more than {max_bytes} bytes, refusing to continue")
                h.update(block)
                out.write(block)
        if h.hexdigest() != sha256:
            raise DownloadError(f"{url}: SHA-256 {h.hexdigest()} does not match the expected {sha256}")
        os.replace(tmp, dest)
    except urllib.error.URLError as e:
        raise DownloadError(f"{url}: download failed ({e.reason})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def download_dataset(name: str, root: PathLike, base_url: str | None = None, checksums: dict | None = None,
                     use_extra: bool = False) -> Path:
    """Fetch ``mnist``, ``fashion-mnist``, ``svhn`` or ``cifar10`` under ``root``, SHA-256 and size checked.

    Files already present with the right checksum are not fetched again.

    Parameters
    ----------
    name : str
        ``"mnist"``, ``"fashion-mnist"``, ``"svhn"`` or ``"cifar10"``.
    root : str or Path
        The folder to download under.
    base_url : str, optional
        Replaces the canonical host (also the ``MLP_MIRROR`` environment variable); the SHA-256 checks stay,
        so a mirror must serve the canonical files.
    checksums : dict, optional
        ``{file name: sha256}`` replacing the known ones (for tests and private mirrors).
    use_extra : bool, default False
        Also fetch SVHN's 1.3 GB extra split.

    Returns
    -------
    Path
        The folder :func:`load_dataset` reads: ``root/<name>`` (``root/cifar-10-batches-bin`` for CIFAR-10).

    Raises
    ------
    DownloadError
        On a network error, a wrong size or checksum, or an unsafe archive.
    """
    if name not in MIRRORS:
        raise ValueError(f"no download for {name!r}; downloadable: {', '.join(MIRRORS)}")
    base = (base_url or os.environ.get("MLP_MIRROR") or MIRRORS[name]).rstrip("/") + "/"
    files = dict(checksums or {**SHA256[name], **(SHA256["svhn-extra"] if name == "svhn" and use_extra else {})})
    folder = Path(root) if name == "cifar10" else Path(root) / name  # the archive sits beside what it holds
    for filename, digest in files.items():
        fetch(base + filename, folder / filename, digest, max_bytes=SIZES.get(filename, MAX_DOWNLOAD_BYTES))
    if name != "cifar10":
        return folder
    return _extract_cifar10(folder / "cifar-10-binary.tar.gz", Path(root) / CIFAR10_DIR)


def download_idx_dataset(name: str, root, base_url: str | None = None, checksums: dict | None = None) -> Path:
    """Fetch the four IDX files of ``mnist`` or ``fashion-mnist`` into ``root/name``; returns that folder."""
    if name not in ("mnist", "fashion-mnist"):
        raise ValueError(f"no IDX download for {name!r}; downloadable: mnist, fashion-mnist")
    return download_dataset(name, root, base_url, checksums)


def _extract_cifar10(archive: Path, dest: Path) -> Path:
    """The batch files of the (checksum-verified) archive into ``dest``, each written atomically.

    One pass over the archive (a gzip stream cannot seek back cheaply); only the named regular-file members
    are read, so a crafted archive cannot write outside ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {f"{CIFAR10_DIR}/{name}": name for name in CIFAR10_MEMBERS}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.pop(member.name, None)
                if name is None:
                    continue
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise DownloadError(f"{archive}: {member.name} is not a regular file")
                fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
                try:
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(source, out)
                    os.replace(tmp, dest / name)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise DownloadError(f"{archive}: not a readable tar.gz archive ({e})") from None
    if wanted:
        raise DownloadError(f"{archive}: no {', '.join(sorted(wanted))} in the archive")
    return dest
