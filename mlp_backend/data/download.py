"""Downloads with SHA-256 checks, bounded size and atomic placement (no partial file under the final name)."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

# Canonical files (gzip) and their SHA-256, as published alongside the datasets' mirrors.
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
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
}
MAX_DOWNLOAD_BYTES = 200 << 20


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


def download_idx_dataset(name: str, root, base_url: str | None = None, checksums: dict | None = None) -> Path:
    """Fetch the four IDX files of ``mnist`` or ``fashion-mnist`` into ``root/name``; returns that folder.

    ``base_url`` (or the ``MLP_MIRROR`` environment variable) replaces the canonical mirror; the
    SHA-256 checks stay, so a mirror must serve the canonical files.
    """
    if name not in SHA256:
        raise ValueError(f"no download for {name!r}; downloadable: {', '.join(SHA256)}")
    base = base_url or os.environ.get("MLP_MIRROR") or MIRRORS[name]
    folder = Path(root) / name
    for filename, digest in (checksums or SHA256[name]).items():
        fetch(base.rstrip("/") + "/" + filename, folder / filename, digest)
    return folder
