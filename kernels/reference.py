"""Pure Array API implementations: the specification of every fused op, and the fallback.

Every function takes the namespace ``xp`` first and works on any Array API library and device.
The fused kernels in ``cpu.py`` and ``cuda.py`` have exactly these signatures and side effects:
what is written in place here is written in place there, and nothing else is.
"""
from __future__ import annotations

import math

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "selu")
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


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


# -- activations ----------------------------------------------------------------------------
def _sigmoid(xp, z):
    # exp of a non-positive number only: no overflow for large |z|.
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def activation(xp, z, act: str, alpha: float = 0.0):
    """``act(z)`` as a new array. ``alpha``: slope of leaky_relu, alpha of elu."""
    if act == "identity":
        return z
    if act == "relu":
        return xp.maximum(z, 0.0)
    if act == "leaky_relu":
        return xp.where(z > 0, z, alpha * z)
    if act == "sigmoid":
        return _sigmoid(xp, z)
    if act == "tanh":
        return xp.tanh(z)
    if act == "elu":
        return xp.where(z > 0, z, alpha * xp.expm1(xp.minimum(z, 0.0)))
    if act == "selu":
        return SELU_SCALE * xp.where(z > 0, z, SELU_ALPHA * xp.expm1(xp.minimum(z, 0.0)))
    raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}")


def activation_grad_from_output(xp, dy, y, act: str, alpha: float = 0.0):
    """``dy * act'(z)`` computed from the activation's output ``y`` (no need to keep ``z``)."""
    if act == "identity":
        return dy
    if act == "relu":
        return xp.where(y > 0, dy, 0.0)
    if act == "leaky_relu":
        return xp.where(y > 0, dy, alpha * dy)
    if act == "sigmoid":
        return dy * y * (1.0 - y)
    if act == "tanh":
        return dy * (1.0 - y * y)
    if act == "elu":
        return xp.where(y > 0, dy, dy * (y + alpha))
    if act == "selu":
        return xp.where(y > 0, SELU_SCALE * dy, dy * (y + SELU_SCALE * SELU_ALPHA))
    raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}")


def bias_act(xp, z, b, act: str, alpha: float = 0.0):
    """``z = act(z + b)`` in place (``b`` may be None); returns ``z``.

    ``z`` must be a buffer the caller owns, usually the fresh output of a matmul.
    """
    if b is not None:
        z += b
    if act != "identity":
        z[...] = activation(xp, z, act, alpha)
    return z


def act_backward(xp, dy, y, act: str, alpha: float = 0.0, out=None, bias_grad=None):
    """Gradient with respect to the pre-activation, from ``dy`` and the output ``y``.

    Returns a new array, or writes into ``out`` (which may be ``dy``) and returns it. With ``bias_grad``
    (a vector of length ``dy.shape[1]``, ``dy`` 2-D) also writes the column sums of the result into it:
    a Dense layer's bias gradient, from the same pass.
    """
    dz = activation_grad_from_output(xp, dy, y, act, alpha)
    if bias_grad is not None:
        bias_grad[...] = xp.sum(dz, axis=0)
    if out is None:
        return dz if dz is not dy else xp.asarray(dy, copy=True)
    if out is not dz:
        out[...] = dz
    return out


# -- optimizer updates over flat buffers -----------------------------------------------------
# Each writes ``p`` and its state arrays in place and leaves ``g`` untouched. ``grad_scale`` is the
# global-norm clipping factor (1.0 when off), ``clip_value`` clips each element (inf when off).
def _effective_grad(xp, g, p, grad_scale, clip_value, weight_decay):
    g = g * grad_scale
    if math.isfinite(clip_value):
        g = xp.clip(g, -clip_value, clip_value)
    if weight_decay:
        g = g + weight_decay * p
    return g


def sgd_update(xp, p, g, v, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
               grad_scale=1.0, clip_value=math.inf):
    """SGD; with momentum ``v = m v - lr g; p += v`` (Nesterov: ``p += m v - lr g``).

    ``v`` (the velocity) is None when ``momentum`` is 0.
    """
    g = _effective_grad(xp, g, p, grad_scale, clip_value, weight_decay)
    if momentum == 0.0:
        p -= lr * g
        return
    v[...] = momentum * v - lr * g
    if nesterov:
        p += momentum * v - lr * g
    else:
        p += v


def rmsprop_update(xp, p, g, s, *, lr, rho=0.9, eps=1e-8, weight_decay=0.0,
                   grad_scale=1.0, clip_value=math.inf):
    """RMSProp: ``s = rho s + (1 - rho) g^2; p -= lr g / (sqrt(s) + eps)``."""
    g = _effective_grad(xp, g, p, grad_scale, clip_value, weight_decay)
    s[...] = rho * s + (1.0 - rho) * g * g
    p -= lr * g / (xp.sqrt(s) + eps)


def adam_update(xp, p, g, m, v, *, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                decoupled=False, grad_scale=1.0, clip_value=math.inf):
    """Adam with bias correction at ``step`` (1 on the first update).

    ``decoupled=True`` is AdamW: ``p *= 1 - lr * weight_decay`` instead of adding ``wd * p`` to g.
    """
    g = _effective_grad(xp, g, p, grad_scale, clip_value, 0.0 if decoupled else weight_decay)
    if decoupled and weight_decay:
        p *= 1.0 - lr * weight_decay
    m[...] = beta1 * m + (1.0 - beta1) * g
    v[...] = beta2 * v + (1.0 - beta2) * g * g
    bias1 = 1.0 - beta1**step
    bias2 = 1.0 - beta2**step
    p -= (lr / bias1) * m / (xp.sqrt(v) / math.sqrt(bias2) + eps)


def global_norm(xp, g):
    """Euclidean norm of a flat gradient buffer, as a 0-d array."""
    return xp.sqrt(xp.sum(g * g))
