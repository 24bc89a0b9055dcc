"""torch CPU tensors through the Numba CPU kernels.

Numba does not take tensors, but ``Tensor.numpy()`` and ``torch.from_numpy`` are zero-copy views (under a
microsecond each), so each op here views its tensors as NumPy arrays, runs the ``cpu.py`` kernel (which
writes in place exactly as the reference does) and hands results back as tensors sharing that memory.
Tensors on other devices, or that require grad, go to the reference.
"""
from __future__ import annotations

import math

import array_api_compat.numpy as np_xp
import torch

from . import cpu, reference


def _view(t):
    """A NumPy view of a CPU tensor, or None when there is none to take."""
    if t is None or not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.requires_grad:
        return None
    return t.numpy()


def _views(*tensors):
    views = [_view(t) for t in tensors]
    return None if any(v is None for v in views) else views


def _tensor(a):
    return torch.from_numpy(a) if a.ndim else torch.from_numpy(a.reshape(1)).reshape(())


def softmax_cross_entropy(xp, logits, labels, label_smoothing=0.0, out=None):
    views = _views(logits, labels, *(() if out is None else (out,)))
    if views is None:
        return reference.softmax_cross_entropy(xp, logits, labels, label_smoothing, out)
    loss, grad = cpu.softmax_cross_entropy(np_xp, views[0], views[1], label_smoothing,
                                           None if out is None else views[2])
    return _tensor(loss), out if out is not None else _tensor(grad)


def sigmoid_binary_cross_entropy(xp, logits, targets, out=None):
    views = _views(logits, targets, *(() if out is None else (out,)))
    if views is None:
        return reference.sigmoid_binary_cross_entropy(xp, logits, targets, out)
    loss, grad = cpu.sigmoid_binary_cross_entropy(np_xp, views[0], views[1], None if out is None else views[2])
    return _tensor(loss), out if out is not None else _tensor(grad)


def bias_act(xp, z, b, act, alpha=0.0):
    views = _views(z, *(() if b is None else (b,)))
    if views is None:
        return reference.bias_act(xp, z, b, act, alpha)
    result = cpu.bias_act(np_xp, views[0], None if b is None else views[1], act, alpha)
    return z if result is views[0] else _tensor(result)


def act_backward(xp, dy, y, act, alpha=0.0, out=None, bias_grad=None):
    optional = tuple(t for t in (out, bias_grad) if t is not None)
    views = _views(dy, y, *optional)
    if views is None:
        return reference.act_backward(xp, dy, y, act, alpha, out, bias_grad)
    out_view = views[2] if out is not None else None
    result = cpu.act_backward(np_xp, views[0], views[1], act, alpha, out_view,
                              views[-1] if bias_grad is not None else None)
    return out if out is not None and result is out_view else _tensor(result)


def sgd_update(xp, p, g, v, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
               grad_scale=1.0, clip_value=math.inf):
    views = _views(p, g, *((v,) if momentum else ()))
    if views is None:
        return reference.sgd_update(xp, p, g, v, lr=lr, momentum=momentum, nesterov=nesterov,
                                    weight_decay=weight_decay, grad_scale=grad_scale, clip_value=clip_value)
    cpu.sgd_update(np_xp, views[0], views[1], views[2] if momentum else None, lr=lr, momentum=momentum,
                   nesterov=nesterov, weight_decay=weight_decay, grad_scale=grad_scale, clip_value=clip_value)


def rmsprop_update(xp, p, g, s, *, lr, rho=0.9, eps=1e-8, weight_decay=0.0,
                   grad_scale=1.0, clip_value=math.inf):
    views = _views(p, g, s)
    if views is None:
        return reference.rmsprop_update(xp, p, g, s, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                        grad_scale=grad_scale, clip_value=clip_value)
    cpu.rmsprop_update(np_xp, *views, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, grad_scale=grad_scale,
                       clip_value=clip_value)


def adam_update(xp, p, g, m, v, *, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                decoupled=False, grad_scale=1.0, clip_value=math.inf):
    views = _views(p, g, m, v)
    if views is None:
        return reference.adam_update(xp, p, g, m, v, lr=lr, step=step, beta1=beta1, beta2=beta2, eps=eps,
                                     weight_decay=weight_decay, decoupled=decoupled, grad_scale=grad_scale,
                                     clip_value=clip_value)
    cpu.adam_update(np_xp, *views, lr=lr, step=step, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                    decoupled=decoupled, grad_scale=grad_scale, clip_value=clip_value)
