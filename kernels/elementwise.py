"""Per-element maths of the fused optimizer updates and of binary cross-entropy, written once for every
compiled target.

Plain Python functions: ``cpu.py`` compiles them inline into its loops (``h`` a tuple of the step's
scalars), ``cuda.py`` into its kernels (``h`` the record array itself); under the CUDA simulator they
run as they are. They mirror the update rules of ``reference.py`` line by line and read the scalars by
the slot names of ``hyper.py``. (The activations' element functions are in ``activations.py``.)
"""
import math

from .activations import sigmoid_forward
from .scalar_math import fast_exp, fast_log1p
from .hyper import (BETA1, BETA2, CLIP, DECAY, GRAD_SCALE, INV_SQRT_BIAS2, L2, LR, MOMENTUM, ONE_MINUS_BETA1,
                    ONE_MINUS_BETA2, ONE_MINUS_RHO, RHO, ADAM_EPS, RMS_EPS, STEP_SIZE)


def effective_grad(g, p, h):
    """``clip(g * grad_scale, -clip, clip) + l2 * p``, as ``reference._effective_grad``."""
    g = g * h[GRAD_SCALE]
    c = h[CLIP]
    g = -c if g < -c else (c if g > c else g)
    return g + h[L2] * p


def sgd_element(p, g, v, h, nesterov, has_v):
    """One SGD element: the new ``(p, v)`` (``v`` unchanged without momentum)."""
    g = effective_grad(g, p, h)
    if not has_v:
        return p - h[LR] * g, v
    v = h[MOMENTUM] * v - h[LR] * g
    return p + ((h[MOMENTUM] * v - h[LR] * g) if nesterov else v), v


def rmsprop_element(p, g, s, h):
    """One RMSProp element: the new ``(p, s)``."""
    g = effective_grad(g, p, h)
    s = h[RHO] * s + h[ONE_MINUS_RHO] * g * g
    return p - h[LR] * g / (math.sqrt(s) + h[RMS_EPS]), s


def adam_element(p, g, m, v, h):
    """One Adam/AdamW element: the new ``(p, m, v)``."""
    g = effective_grad(g, p, h)
    m = h[BETA1] * m + h[ONE_MINUS_BETA1] * g
    v = h[BETA2] * v + h[ONE_MINUS_BETA2] * g * g
    return h[DECAY] * p - h[STEP_SIZE] * m / (math.sqrt(v) * h[INV_SQRT_BIAS2] + h[ADAM_EPS]), m, v


def bce_element(x, t):
    """Binary cross-entropy of logit ``x`` against target ``t``, and its derivative in ``x``:
    ``(max(x, 0) - x t + log(1 + exp(-|x|)), sigmoid(x) - t)``; no exponential overflows."""
    return (x if x > 0 else x - x) - x * t + fast_log1p(fast_exp(-abs(x))), sigmoid_forward(x, x) - t
