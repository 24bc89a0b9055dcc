"""A model, with its optimizer and loss, rebuilt from a checkpoint file on any backend.

This sits above the layers, optimizers and losses it rebuilds; ``checkpoint.py`` is the file format alone,
so that the training loop, which writes and reads training checkpoints, never imports the model classes.
"""
from __future__ import annotations

import json

import numpy as np

from .checkpoint import Checkpoint, CheckpointError, read, section
from .layers import Sequential
from .losses import LOSSES
from .optim import Optimizer


def load(path, backend="numpy", device=None, dtype=None, kernels=None, allow_nonfinite=False) -> Checkpoint:
    """Rebuild the model (and optimizer, if saved) from a checkpoint, on any backend.

    The parameters must have the dtype the stored configuration names (no silent casts) and be finite
    (NaN or infinite weights are refused unless ``allow_nonfinite``: a diverged run's file is not a model).
    """
    tensors, meta = read(path)
    _check_parameters(path, tensors, meta, allow_nonfinite)
    try:
        config = json.loads(meta["model_config"])
        model = Sequential.from_config(config, backend=backend, device=device, kernels=kernels,
                                       **({"dtype": dtype} if dtype else {}))
        model.load_parameters(section(tensors, "param"))
        extra = json.loads(meta.get("extra", "{}"))
        if "loss" in meta:
            spec = json.loads(meta["loss"])
            model.loss = LOSSES[spec.pop("name")](**spec)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: checkpoint does not describe a valid model ({e})") from None
    optimizer = None
    if "optimizer" in meta:
        info = json.loads(meta["optimizer"])
        try:
            state = {"step_count": info["step_count"], "lr_scale": info["lr_scale"], **section(tensors, "optim")}
            optimizer = Optimizer.rebuild(info["class"], info["config"], state, model.be, model.flat_params)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: invalid optimizer in checkpoint ({e})") from None
        model.optimizer = optimizer
    return Checkpoint(model, optimizer, extra, section(tensors, "extra"))


def _check_parameters(path, tensors, meta, allow_nonfinite):
    try:
        stored = json.loads(meta["model_config"]).get("dtype", "float32")
    except (KeyError, AttributeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: checkpoint does not describe a valid model ({e})") from None
    for name, array in section(tensors, "param").items():
        if str(array.dtype) != stored:
            raise CheckpointError(f"{path}: parameter {name} is {array.dtype}, the model's dtype is {stored}")
        if not allow_nonfinite and not np.all(np.isfinite(array)):
            raise CheckpointError(f"{path}: parameter {name} holds NaN or infinite values "
                                  "(load with allow_nonfinite=True to inspect it)")
