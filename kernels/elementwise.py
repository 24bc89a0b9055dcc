"""Per-element maths of the fused kernels, written once and compiled for both targets.

These are ``@njit`` functions that the CPU kernels (``cpu.py``) inline into their loops and the CUDA
kernels (``cuda.py``) call from ``cuda.jit`` code. They use only ``math`` functions both targets
provide, and mirror ``reference.py`` line by line.

Scalars arrive in the arrays' dtype and constants are derived from them (``alpha - alpha`` is a zero
of that dtype): a Python literal would promote float32 arithmetic to float64 and halve the SIMD width.
"""
import math

from numba import njit

from .reference import ACTIVATIONS, SELU_ALPHA, SELU_SCALE

_INLINE = dict(cache=True, error_model="numpy", inline="always")
ACT_CODES = {name: i for i, name in enumerate(ACTIVATIONS)}
IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH, ELU, SELU = (ACT_CODES[a] for a in ACTIVATIONS)


@njit(**_INLINE)
def _act_elem(z, act, alpha):
    if act == RELU:
        return alpha - alpha if z < 0 else z  # NaN stays NaN, as with maximum()
    if act == LEAKY_RELU:
        return z if z > 0 else alpha * z
    if act == SIGMOID:
        e = math.exp(-abs(z))
        return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
    if act == TANH:
        return math.tanh(z)
    if act == ELU:
        return z if z > 0 else alpha * math.expm1(z if z < 0 else 0.0 * z)
    if act == SELU:
        return SELU_SCALE * (z if z > 0 else SELU_ALPHA * math.expm1(z if z < 0 else 0.0 * z))
    return z


@njit(**_INLINE)
def _act_grad_elem(dy, y, act, alpha):
    if act == RELU:
        return dy if y > 0 else alpha - alpha
    if act == LEAKY_RELU:
        return dy if y > 0 else alpha * dy
    if act == SIGMOID:
        return dy * y - dy * y * y  # dy * y * (1 - y) without a float64 literal in float32 code
    if act == TANH:
        return dy - dy * y * y
    if act == ELU:
        return dy if y > 0 else dy * (y + alpha)
    if act == SELU:
        return SELU_SCALE * dy if y > 0 else dy * (y + SELU_SCALE * SELU_ALPHA)
    return dy


@njit(**_INLINE)
def _grad_elem(g, p, scale, clip, do_clip, l2):
    g = g * scale
    if do_clip:
        g = -clip if g < -clip else (clip if g > clip else g)
    return g + l2 * p


@njit(**_INLINE)
def _sgd_elem(p, g, v, lr, mom, nesterov, has_v, l2, scale, clip, do_clip):
    """One SGD element: returns the new ``(p, v)`` (``v`` unused without momentum)."""
    g = _grad_elem(g, p, scale, clip, do_clip, l2)
    if not has_v:
        return p - lr * g, v
    v = mom * v - lr * g
    return p + ((mom * v - lr * g) if nesterov else v), v


@njit(**_INLINE)
def _rmsprop_elem(p, g, s, lr, rho, one_minus_rho, eps, l2, scale, clip, do_clip):
    """One RMSProp element: returns the new ``(p, s)``."""
    g = _grad_elem(g, p, scale, clip, do_clip, l2)
    s = rho * s + one_minus_rho * g * g
    return p - lr * g / (math.sqrt(s) + eps), s


@njit(**_INLINE)
def _adam_elem(p, g, m, v, b1, one_minus_b1, b2, one_minus_b2, eps, step_size, inv_sqrt_bias2, decay, l2, scale,
               clip, do_clip):
    """One Adam/AdamW element: returns the new ``(p, m, v)``."""
    g = _grad_elem(g, p, scale, clip, do_clip, l2)
    m = b1 * m + one_minus_b1 * g
    v = b2 * v + one_minus_b2 * g * g
    return p * decay - step_size * m / (math.sqrt(v) * inv_sqrt_bias2 + eps), m, v
