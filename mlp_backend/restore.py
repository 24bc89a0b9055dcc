"""A model, with its optimizer and loss, rebuilt from a checkpoint file on any backend.

This sits above the layers, optimizers and losses it rebuilds; ``checkpoint.py`` is the file format alone,
so that the training loop, which writes and reads training checkpoints, never imports the model classes.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from .checkpoint import Checkpoint, CheckpointError, read, section
from .layers import LAYERS, Sequential
from .losses import LOSSES
from .optim import Optimizer
from .types import PathLike

if TYPE_CHECKING:
    from .backends import Backend


def load(path: PathLike, backend: str | Backend = "numpy", device: str | int | None = None, dtype: str | None = None,
         kernels: str | None = None, allow_nonfinite: bool = False) -> Checkpoint:
    """Rebuild the model (and optimizer, if saved) from a checkpoint, on any backend.

    Every metadata field is parsed and checked before anything is allocated: the layers the configuration
    describes must have exactly the stored parameters' names and shapes, in the dtype it names (no silent
    casts), and finite.

    Parameters
    ----------
    path : str or Path
        A checkpoint written by :func:`save_checkpoint` or ``fit(checkpoint=...)``.
    backend : str or Backend, default "numpy"
        The backend to load onto.
    device : str or int, optional
        Its device.
    dtype : {"float32", "float64"}, optional
        Convert to this dtype after loading (default: the stored one).
    kernels : {"auto", "numba", "reference"}, optional
        The model's kernels.
    allow_nonfinite : bool, default False
        Accept NaN or infinite weights (to inspect a diverged run's file).

    Returns
    -------
    Checkpoint
        ``model`` (a :class:`~mlp_backend.Sequential`), ``optimizer`` (or None), ``extra`` (the JSON values)
        and ``arrays``.

    Raises
    ------
    CheckpointError
        On any defect, naming the file and the field.
    """
    tensors, meta = read(path)
    config = _json(path, meta, "model_config", dict)
    layers = _layers(path, config, section(tensors, "param"), allow_nonfinite)
    extra = _json(path, meta, "extra", dict) if "extra" in meta else {}
    loss = None
    if "loss" in meta:
        spec = dict(_json(path, meta, "loss", dict))
        try:
            loss = LOSSES[spec.pop("name")](**spec)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: field loss: not a loss this version knows ({e})") from None
    info = _json(path, meta, "optimizer", dict) if "optimizer" in meta else None
    if info is not None:
        steps, scale = info.get("step_count"), info.get("lr_scale")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise CheckpointError(f"{path}: field optimizer.step_count must be a non-negative integer, got {steps!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
            raise CheckpointError(f"{path}: field optimizer.lr_scale must be a positive number, got {scale!r}")
    model = Sequential(layers, backend=backend, device=device, kernels=kernels,
                       dtype=dtype or config.get("dtype", "float32"))
    model.load_parameters(section(tensors, "param"))
    model.loss = loss
    optimizer = None
    if info is not None:
        try:
            state = {"step_count": info["step_count"], "lr_scale": info["lr_scale"], **section(tensors, "optim")}
            optimizer = Optimizer.rebuild(info["class"], info["config"], state, model.be, model.flat_params)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: field optimizer: invalid ({e})") from None
        model.optimizer = optimizer
    return Checkpoint(model, optimizer, extra, section(tensors, "extra"))


def _json(path, meta, field, kind):
    """Metadata ``field`` parsed as JSON of type ``kind``."""
    if field not in meta:
        raise CheckpointError(f"{path}: field {field} is missing: not a model checkpoint of mlp-backend")
    try:
        value = json.loads(meta[field])
    except (json.JSONDecodeError, RecursionError, TypeError) as e:
        raise CheckpointError(f"{path}: field {field}: not valid JSON ({type(e).__name__})") from None
    if not isinstance(value, kind):
        raise CheckpointError(f"{path}: field {field}: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _layers(path, config, params, allow_nonfinite):
    """The configuration's layers (nothing allocated yet), checked against the stored parameters."""
    stored = config.get("dtype", "float32")
    if stored not in ("float32", "float64"):
        raise CheckpointError(f"{path}: field model_config.dtype must be float32 or float64, got {stored!r}")
    specs = config.get("layers")
    if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
        raise CheckpointError(f"{path}: field model_config.layers must be a non-empty list of layer objects")
    layers = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        kind = spec.pop("type", None)
        try:
            layers.append(LAYERS[kind](**spec))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: field model_config.layers[{i}] ({kind!r}): {e}") from None
    expected = {}  # name -> shape of every parameter and buffer (BatchNorm's running statistics)
    for prefix, layer in zip(Sequential.layer_names(layers), layers):
        expected.update({f"{prefix}.{name}": tuple(shape) for name, shape in layer.param_shapes().items()})
        expected.update({f"{prefix}.{name}": np.shape(v) for name, v in layer.initial_buffers().items()})
    if set(expected) != set(params):
        raise CheckpointError(f"{path}: field model_config: its layers have parameters {sorted(expected)}, the file "
                              f"holds {sorted(params)}")
    for name, array in params.items():
        if tuple(array.shape) != expected[name]:
            raise CheckpointError(f"{path}: parameter {name} has shape {tuple(array.shape)}, the configuration says "
                                  f"{expected[name]}")
        if str(array.dtype) != stored:
            raise CheckpointError(f"{path}: parameter {name} is {array.dtype}, the model's dtype is {stored}")
        if not allow_nonfinite and not np.all(np.isfinite(array)):
            raise CheckpointError(f"{path}: parameter {name} holds NaN or infinite values "
                                  "(load with allow_nonfinite=True to inspect it)")
    return layers
