"""A model, with its optimizer and loss, rebuilt from a checkpoint file on any backend.

This sits above the layers, optimizers and losses it rebuilds; ``checkpoint.py`` is the file format alone,
so that the training loop, which writes and reads training checkpoints, never imports the model classes.
"""
from __future__ import annotations

import json

from .checkpoint import Checkpoint, CheckpointError, read, section
from .layers import Sequential
from .losses import LOSSES
from .optim import Optimizer


def load(path, backend="numpy", device=None, dtype=None, kernels=None) -> Checkpoint:
    """Rebuild the model (and optimizer, if saved) from a checkpoint, on any backend."""
    tensors, meta = read(path)
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
