"""Pure Array API implementations: the specification of every fused op, and the fallback.

Every function takes the namespace ``xp`` first and works on any Array API library and device.
The fused kernels in ``cpu.py`` and ``cuda.py`` have exactly these signatures and side effects:
what is written in place here is written in place there, and nothing else is.
"""
from __future__ import annotations

import math

from .activations import ACTIVATIONS, TABLE  # noqa: F401  (ACTIVATIONS re-exported for callers)
from . import hyper as H
from . import optimizers
from .activations import get as get_activation


# -- losses ---------------------------------------------------------------------------------
def log_softmax(xp, z):
    """Log-softmax over the last axis, shifted by the row maximum so large logits cannot overflow."""
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax_cross_entropy(xp, logits, labels, label_smoothing=0.0, out=None):
    """Mean softmax cross-entropy of ``logits`` (N, C) against integer ``labels`` (N,).

    Returns ``(loss, grad)``: ``loss`` a 0-d array, ``grad`` the gradient of the mean loss with
    respect to the logits, ``(softmax - target) / N`` with target ``(1 - e) * onehot + e / C``.
    When ``out`` is given (it may be ``logits`` itself) the gradient is written there.
    """
    n, c = logits.shape
    logp = log_softmax(xp, logits)
    hot = labels[:, None] == xp.arange(c, device=logits.device)
    # xp.where, not a product with the one-hot: 0 * (-inf) would be NaN for -inf logits.
    row_loss = -(1.0 - label_smoothing) * xp.sum(xp.where(hot, logp, 0.0), axis=1)
    if label_smoothing > 0:
        row_loss = row_loss - (label_smoothing / c) * xp.sum(logp, axis=1)
    loss = xp.mean(row_loss)
    target = (1.0 - label_smoothing) * xp.astype(hot, logits.dtype) + label_smoothing / c
    grad = (xp.exp(logp) - target) / n
    if out is None:
        return loss, grad
    out[...] = grad
    return loss, out


def sigmoid_binary_cross_entropy(xp, logits, targets, out=None):
    """Mean binary cross-entropy of ``logits`` against 0/1 ``targets`` of the same shape.

    Uses ``max(z, 0) - z t + log(1 + exp(-|z|))`` so no exponential overflows. Returns
    ``(loss, grad)`` with ``grad = (sigmoid(z) - t) / numel``, written into ``out`` when given.
    """
    count = math.prod(logits.shape)
    loss = xp.mean(xp.maximum(logits, 0.0) - logits * targets + xp.log1p(xp.exp(-xp.abs(logits))))
    grad = (_sigmoid(xp, logits) - targets) / count
    if out is None:
        return loss, grad
    out[...] = grad
    return loss, out


def softmax(xp, z):
    return xp.exp(log_softmax(xp, z))


def softmax_backward(xp, y, dy):
    """Exact softmax backward along the last axis: ``y * (dy - sum(dy * y))``."""
    return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True))


# -- activations (their maths: activations.py) ---------------------------------------------------
def _sigmoid(xp, z):
    return TABLE["sigmoid"].xp_forward(xp, z, 0.0)


def activation(xp, z, act: str, alpha: float = 0.0):
    """``act(z)`` as a new array (``z`` itself for identity). ``alpha``: slope of leaky_relu, alpha of elu."""
    return get_activation(act).xp_forward(xp, z, alpha)


def activation_derivative(xp, dy, saved, act: str, alpha: float = 0.0):
    """``dy * act'(z)`` from what the activation saves: its output ``y``, or ``z`` where ``saves == 'input'``."""
    return get_activation(act).xp_derivative(xp, dy, saved, alpha)


def bias_act(xp, z, b, act: str, alpha: float = 0.0):
    """``z = act(z + b)`` in place (``b`` may be None); returns ``z``.

    ``z`` must be a buffer the caller owns, usually the fresh output of a matmul.
    """
    get_activation(act)  # an unknown name is an error before z is touched
    if b is not None:
        z += b
    if act != "identity":
        z[...] = activation(xp, z, act, alpha)
    return z


def act_backward(xp, dy, saved, act: str, alpha: float = 0.0, out=None, bias_grad=None):
    """Gradient with respect to the pre-activation, from ``dy`` and what the activation saves
    (``TABLE[act].saves``: its output ``y``, or its input ``z``).

    Returns a new array, or writes into ``out`` (which may be ``dy``) and returns it. With ``bias_grad``
    (a vector of length ``dy.shape[1]``, ``dy`` 2-D) also writes the column sums of the result into it:
    a Dense layer's bias gradient, from the same pass.
    """
    dz = activation_derivative(xp, dy, saved, act, alpha)
    if bias_grad is not None:
        bias_grad[...] = xp.sum(dz, axis=0)
    if out is None:
        return dz if dz is not dy else xp.asarray(dy, copy=True)
    if out is not dz:
        out[...] = dz
    return out


# -- optimizer updates over flat buffers -----------------------------------------------------
def optimizer_update(xp, rule, p, g, s0, s1, hp):
    """One update of ``p`` and its state arrays ``s0``, ``s1`` (None where the rule has fewer) by the
    optimizer table's ``rule``, in place; ``g`` is left untouched. ``hp`` is the step's scalar record
    (``hyper.py``): an array in p's dtype on p's device, already folded by the optimizer. When its ``skip``
    slot is set nothing is written."""
    new = optimizers.RULES[rule].xp_update(xp, p, g, s0, s1, hp)
    skip = hp[H.SKIP] != 0
    for target, value in zip((p, s0, s1), new):
        if target is not None:
            target[...] = xp.where(skip, target, value)


def global_norm(xp, g):
    """Euclidean norm of a flat gradient buffer, as a 0-d array."""
    return xp.sqrt(xp.sum(g * g))
