"""Pure Array API implementations: the specification of every fused op, and the fallback.

Every function takes the namespace ``xp`` first and works on any Array API library and device.
The fused kernels in ``cpu.py`` and ``cuda.py`` have exactly these signatures and side effects:
what is written in place here is written in place there, and nothing else is.
"""
from __future__ import annotations

import math

from .activations import ACTIVATIONS, TABLE  # noqa: F401  (ACTIVATIONS re-exported for callers)
from . import hyper as H
from .elementwise import GRADIENT_NOT_FINITE, LOSS_NOT_FINITE
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


# -- penalties ---------------------------------------------------------------------------------
def l2_penalty(xp, w, g, lam: float, scratch=None):
    """An L2 penalty's work on one weight matrix in a training step: ``g += w * lam`` in place, and ``w * w``
    returned (written into ``scratch`` when given) for the penalty's value, ``0.5 * lam * sum(w * w)``."""
    g += w * lam
    squares = w * w
    if scratch is None:
        return squares
    scratch[...] = squares
    return scratch


# -- normalisation layers ------------------------------------------------------------------
def inv_std_shape(shape, axis):
    """The shape of ``norm_forward``'s ``inv_std`` for an input of ``shape``: one per feature (axis 0), one per
    sample as a column (axis 1)."""
    return (shape[1],) if axis == 0 else (shape[0], 1)


def norm_forward(xp, x, gamma, beta, eps, axis, running=None, out=None):
    """Normalisation of a 2-D ``x`` by its statistics over ``axis`` (0: each feature over the batch, BatchNorm in
    training; 1: each sample over its features, LayerNorm), scaled by ``gamma`` and shifted by ``beta``.

    Returns ``(y, xhat, inv_std)``: the output, the normalised input and ``1 / sqrt(var + eps)`` (shape ``(F,)`` for
    axis 0, ``(N, 1)`` for axis 1), what ``norm_backward`` needs; written into the arrays of ``out`` when given.
    ``running``: BatchNorm's ``(mean, var, momentum)``, updated in place with the batch's statistics (the variance
    unbiased, as torch's)."""
    mean = xp.mean(x, axis=axis, keepdims=axis == 1)
    var = xp.var(x, axis=axis, keepdims=axis == 1)
    if running is not None:
        rm, rv, m = running
        n = x.shape[0]
        rm[...] = (1 - m) * rm + m * mean
        rv[...] = (1 - m) * rv + m * var * (n / (n - 1))
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    results = (xhat * gamma + beta, xhat, inv_std)
    if out is None:
        return results
    for target, value in zip(out, results):
        target[...] = value
    return out


def norm_backward(xp, dy, xhat, inv_std, gamma, axis, dgamma, dbeta, input_grad=True, out=None):
    """The backward of ``norm_forward``: the gradients of ``gamma`` and ``beta`` written into ``dgamma`` and
    ``dbeta``; returns the input's gradient (written into ``out`` when given), or None without ``input_grad``."""
    dgamma[...] = xp.sum(dy * xhat, axis=0)
    dbeta[...] = xp.sum(dy, axis=0)
    if not input_grad:
        return None
    dxhat = dy * gamma
    # d/dx of (x - mean) / std with the statistics along `axis`
    dx = inv_std * (dxhat - xp.mean(dxhat, axis=axis, keepdims=True)
                    - xhat * xp.mean(dxhat * xhat, axis=axis, keepdims=True))
    if out is None:
        return dx
    out[...] = dx
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


# -- a training step's bookkeeping ------------------------------------------------------------


def gather_batch(xp, X, y, order, counter, batch_size: int, first: int, n: int, idx=None, xb=None, yb=None):
    """A step's ``n`` samples, chosen on the device: their indices ``order[counter[0] * batch_size + first + i]``
    for ``i < n`` (the epoch's sample order, from the step the one-element ``counter`` holds), and those rows of
    ``X`` and ``y``. Returns ``(idx, xb, yb)``, written into those arrays where given (else new)."""
    at = xp.arange(first, first + n, dtype=xp.int64, device=order.device) + counter * batch_size
    rows = xp.take(order, at)
    result = []
    for out, value in ((idx, rows), (xb, xp.take(X, rows, axis=0)), (yb, xp.take(y, rows, axis=0))):
        if out is not None:
            out[...] = value
        result.append(value if out is None else out)
    return tuple(result)


def count_correct(xp, logits, targets, counter, correct):
    """The batch's correct predictions into ``correct[counter[0]]``: its rows whose largest logit (the first, or
    the first NaN) is at the label, ``targets`` itself (integers) or the largest target of the row (one-hot or soft
    targets)."""
    labels = targets if targets.ndim == 1 else xp.argmax(targets, axis=1)
    hits = xp.sum(xp.astype(xp.argmax(logits, axis=1) == labels, correct.dtype))
    correct[...] = xp.where(xp.arange(correct.shape[0], device=correct.device) == counter[0], hits, correct)


def record_step(xp, value, counter, losses, record=None, records=None, flags=None, bad=None, grad_sum=None):
    """What a training step writes between its backward pass and its update, on the device: with ``c`` the step
    the one-element ``counter`` holds (never read on the host),

    - ``losses[c] = value`` (the batch's loss, a 0-d array);
    - with ``flags``: the step's flag into ``flags[c]``, ``LOSS_NOT_FINITE`` where ``value`` is not finite, else
      ``GRADIENT_NOT_FINITE`` where ``grad_sum`` (the gradients' sum, when given) is not, else 0; and the 0-d
      ``bad`` made 1 from the first flagged step on (``max(bad, flag != 0)``);
    - with ``records``: ``record[...] = records[c]``, the update's scalars, its skip slot ``bad`` with ``flags``;
    - ``counter += 1``.
    """
    at = xp.arange(losses.shape[0], device=losses.device) == counter[0]
    losses[...] = xp.where(at, xp.astype(value, losses.dtype), losses)
    if flags is not None:
        loss_ok = xp.isfinite(value)
        flag = LOSS_NOT_FINITE * xp.astype(~loss_ok, flags.dtype)
        if grad_sum is not None:
            flag = flag + GRADIENT_NOT_FINITE * xp.astype(loss_ok & ~xp.isfinite(grad_sum), flags.dtype)
        flags[...] = xp.where(at, flag, flags)
        bad[...] = xp.maximum(bad, xp.astype(flag != 0, bad.dtype))
    if records is not None:
        record[...] = xp.take(records, counter, axis=0)[0, ...]
        if flags is not None:
            record[H.SKIP] = xp.astype(bad, record.dtype)
    counter[...] = counter + 1


def global_norm(xp, g):
    """Euclidean norm of a flat gradient buffer, as a 0-d array."""
    return xp.sqrt(xp.sum(g * g))
