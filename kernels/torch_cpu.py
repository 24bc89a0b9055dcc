"""torch CPU tensors through the Numba CPU kernels.

Numba does not take tensors, but ``Tensor.numpy()`` and ``torch.from_numpy`` are zero-copy views (under a
microsecond each), so every op of ``cpu.py`` is adapted here the same way: its tensor arguments viewed as
NumPy arrays, the kernel run (it writes in place exactly as the reference does), and arrays it returns
handed back as tensors sharing that memory (the caller's own tensor where the kernel returned its view).
Tensors on other devices, or that require grad, make the op answer NotImplemented: the registry then
runs the reference.
"""
from __future__ import annotations

import functools

import array_api_compat.numpy as np_xp
import numpy as np
import torch

from . import cpu


def _view(t):
    """A NumPy view of a CPU tensor, or None when there is none to take."""
    if t.device.type != "cpu" or t.requires_grad:
        return None
    return t.numpy()


def _tensor(a, views):
    """The tensor for kernel result ``a``: the caller's, when ``a`` is one of the views handed in."""
    if not isinstance(a, np.ndarray):
        return a
    for view, tensor in views:
        if a is view:
            return tensor
    return torch.from_numpy(a) if a.ndim else torch.from_numpy(a.reshape(1)).reshape(())


def _adapt(kernel):
    @functools.wraps(kernel)
    def op(xp, *args, **kwargs):
        views = []

        def as_numpy(x):
            if not isinstance(x, torch.Tensor):
                return x
            view = _view(x)
            views.append((view, x))
            return view

        args = [as_numpy(a) for a in args]
        kwargs = {k: as_numpy(v) for k, v in kwargs.items()}
        if any(view is None for view, _ in views):
            return NotImplemented
        result = kernel(np_xp, *args, **kwargs)
        if isinstance(result, tuple):
            return tuple(_tensor(r, views) for r in result)
        return _tensor(result, views)
    return op


softmax_cross_entropy = _adapt(cpu.softmax_cross_entropy)
sigmoid_binary_cross_entropy = _adapt(cpu.sigmoid_binary_cross_entropy)
bias_act = _adapt(cpu.bias_act)
act_backward = _adapt(cpu.act_backward)
optimizer_update = _adapt(cpu.optimizer_update)
gather_batch = _adapt(cpu.gather_batch)
count_correct = _adapt(cpu.count_correct)
record_step = _adapt(cpu.record_step)
l2_penalty = _adapt(cpu.l2_penalty)
