"""Checkpoints in the safetensors format: never pickle, verified on load, written atomically.

``restore.load`` rebuilds a model from one. A checkpoint holds the model's parameters and buffers,
optionally the optimizer state, and in its metadata the model configuration (so it loads onto any backend
without the code that built it), the optimizer configuration, free-form JSON ``extra`` and a SHA-256 over all
of it: every tensor's name, dtype, shape and bytes and every metadata entry, so a changed byte anywhere is
refused (or, in the safetensors header's padding, harmless).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .types import PathLike

if TYPE_CHECKING:
    from .layers import Sequential
    from .optim import Optimizer

FORMAT = "mlp-backend/2"  # the SHA-256 covers the metadata too
FORMAT_TENSORS_ONLY = "mlp-backend/1"  # earlier files, whose SHA-256 covers the tensors alone: still read
MAX_BYTES = 1 << 34  # refuse checkpoints over 16 GiB before reading them


class CheckpointError(ValueError):
    """A checkpoint file is missing pieces, corrupted, or does not match the model."""


@dataclass
class Checkpoint:
    model: object
    optimizer: object | None = None
    extra: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


def _digest(tensors: dict, meta: dict | None) -> str:
    """SHA-256 of every tensor (name, dtype, shape, bytes) and every metadata entry but the digest itself."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(name.encode() + b"\0" + str(arr.dtype).encode() + b"\0" + repr(arr.shape).encode() + b"\0")
        h.update(arr.tobytes())
    for key in sorted(meta or {}):
        if key != "sha256":
            h.update(b"meta\0" + key.encode() + b"\0" + meta[key].encode() + b"\0")
    return h.hexdigest()


def save(model: Sequential, path: PathLike, optimizer: Optimizer | None = None, extra: dict | None = None,
         arrays: dict | None = None, pending: bool = False) -> Path:
    """Write a checkpoint (safetensors, never pickle) atomically; an existing one at ``path`` is kept as ``.prev``.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, then renamed over ``path``
    and the directory is fsynced: a crash at any moment leaves either the old or the new file under ``path``,
    never a partial one. One SHA-256 covers every tensor and metadata entry. Errors (full disk, read-only
    directory) propagate.

    Parameters
    ----------
    model : Sequential
        The model: its configuration, parameters and buffers.
    path : str or Path
        The file to write.
    optimizer : Optimizer, optional
        Also store its configuration and state, to continue training after loading.
    extra : dict, optional
        JSON values stored in the metadata (``Checkpoint.extra`` on load).
    arrays : dict, optional
        Further host arrays stored as ``extra/<name>`` (``Checkpoint.arrays`` on load).
    pending : bool, default False
        Write to ``path + ".pending"`` instead, until :func:`promote` installs it (``fit`` does this until the
        loss at the saved weights has been read finite).

    Returns
    -------
    Path
        ``path``.
    """
    from safetensors.numpy import save as st_save

    path = Path(path)
    tensors = {f"param/{k}": np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "model_config": json.dumps(model.config()), "extra": json.dumps(extra or {})}
    if model.loss is not None:
        meta["loss"] = json.dumps({"name": model.loss.name, **model.loss.config()})
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = json.dumps({"class": type(optimizer).__name__, "config": optimizer.config(),
                                        "step_count": state.pop("step_count"), "lr_scale": state.pop("lr_scale")})
        tensors.update({f"optim/{k}": np.ascontiguousarray(v) for k, v in state.items()})
    tensors.update({f"extra/{k}": np.ascontiguousarray(v) for k, v in (arrays or {}).items()})
    meta["sha256"] = _digest(tensors, meta)
    payload = st_save(tensors, metadata=meta)
    _atomic_write(pending_path(path) if pending else path, payload, keep_previous=not pending)
    return path


def _atomic_write(path: Path, payload: bytes, keep_previous: bool = True):
    """``payload`` at ``path`` or nowhere: a temporary file, flushed and fsynced, renamed over ``path`` (the file
    there first kept as ``path + '.prev'``), then the directory fsynced."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        _install(tmp, path, keep_previous)
    except BaseException:
        for leftover in (tmp, tmp + ".prev"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise


def _install(source: str, path: Path, keep_previous: bool = True):
    """Rename ``source`` over ``path``, keeping the file there as ``path + '.prev'`` (a hard link, then an atomic
    rename), and fsync the directory."""
    if keep_previous and path.exists():
        prev_tmp = str(source) + ".prev"
        if os.path.lexists(prev_tmp):  # left by a process killed between the link and the rename below
            os.unlink(prev_tmp)
        os.link(path, prev_tmp)
        os.replace(prev_tmp, str(path) + ".prev")
    os.replace(source, path)
    directory = path.parent if str(path.parent) else Path(".")
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def pending_path(path) -> Path:
    """Where a checkpoint waits until it is known to be good (``save(..., pending=True)``, :func:`promote`)."""
    path = Path(path)
    return path.with_name(path.name + ".pending")


def promote(path):
    """The pending checkpoint of ``path``, if any, becomes ``path`` (the one there kept as ``.prev``)."""
    pending = pending_path(path)
    if pending.exists():
        _install(str(pending), Path(path))



def read(path, max_bytes: int = MAX_BYTES) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a verified checkpoint file; raises CheckpointError on any defect."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    path = Path(path)
    size = path.stat().st_size  # FileNotFoundError for a missing file
    if size > max_bytes:
        raise CheckpointError(f"{path}: {size} bytes is over the {max_bytes}-byte limit")
    data = path.read_bytes()
    if len(data) < 8:
        raise CheckpointError(f"{path}: not a safetensors file (only {len(data)} bytes)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise CheckpointError(f"{path}: header length {header_len} exceeds the file")
    try:
        header = json.loads(data[8:8 + header_len])
        tensors = st_load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({type(e).__name__}: {e})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, FORMAT_TENSORS_ONLY):
        raise CheckpointError(f"{path}: not an mlp-backend checkpoint (format {FORMAT!r} expected)")
    if "sha256" not in meta:
        raise CheckpointError(f"{path}: no SHA-256 digest in its metadata: not a complete mlp-backend checkpoint")
    if meta["sha256"] != _digest(tensors, meta if meta["format"] == FORMAT else None):
        raise CheckpointError(f"{path}: SHA-256 mismatch, the file is corrupted")
    return tensors, meta


def section(tensors: dict, prefix: str) -> dict:
    """The tensors stored under ``prefix/`` ('param', 'optim' or 'extra'), without the prefix."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
