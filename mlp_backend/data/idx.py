"""Reader for IDX files (the MNIST format), plain or gzip-compressed, validated before allocation."""
from __future__ import annotations

import gzip
import math
import os
import struct

import numpy as np

from ..types import PathLike

# IDX type codes -> big-endian NumPy dtypes
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_BYTES = 1 << 31  # refuse files that claim more than 2 GiB of data


class IDXError(ValueError):
    """A file is not a valid IDX file (bad magic, dimensions or length)."""


def read_idx(path: PathLike, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` is decompressed), in native byte order.

    Sizes are validated against the header before anything is allocated.

    Parameters
    ----------
    path : str or Path
        The file.
    max_bytes : int, default 2 GiB
        Refuse files whose header declares more data than this.

    Returns
    -------
    numpy.ndarray
        The array, in the header's shape and type.

    Raises
    ------
    IDXError
        On a malformed or truncated file, naming the file and the defect.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            header = f.read(4)
            if len(header) < 4 or header[0] != 0 or header[1] != 0:
                raise IDXError(f"{path}: not an IDX file (bad magic number {header.hex() or 'empty'})")
            type_code, ndim = header[2], header[3]
            if type_code not in _TYPES:
                raise IDXError(f"{path}: unknown IDX data type 0x{type_code:02x}")
            if ndim == 0:
                raise IDXError(f"{path}: IDX file with 0 dimensions")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise IDXError(f"{path}: truncated IDX header")
            dims = struct.unpack(f">{ndim}I", dims_raw)
            dtype = np.dtype(_TYPES[type_code])
            expected = math.prod(dims) * dtype.itemsize  # Python ints: a forged header cannot overflow
            if expected > max_bytes:
                raise IDXError(f"{path}: header claims {expected} bytes of data, over the {max_bytes}-byte limit")
            data = f.read(expected + 1)  # one more byte to detect trailing garbage, bounded by the check above
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise IDXError(f"{path}: cannot read ({e})") from None
    if len(data) != expected:
        raise IDXError(f"{path}: expected {expected} bytes of data for shape {dims}, found "
                       f"{len(data) if len(data) <= expected else 'more'}")
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array: np.ndarray):
    """Write an array as IDX (gzip-compressed when the name ends in .gz).

    Parameters
    ----------
    path : str or Path
        The file to write.
    array : numpy.ndarray
        uint8, int8, int16, int32, float32 or float64 data of any shape.
    """
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(_TYPES[code]).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)
