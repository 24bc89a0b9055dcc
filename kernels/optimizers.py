"""The optimizer table: every update rule defined once, here.

Each entry gives
- ``fields``: its scalars in the step's record after the common ones (``COMMON``); the record layout
  (``hyper.FIELDS``) and every slot index follow from them (``slots``), so nothing is numbered by hand.
- ``state``: the names of its state arrays (at most two), shaped like the parameters.
- ``element(p, g, s0, s1, h)``: one parameter's update in plain scalar Python, returning the new
  ``(p, s0, s1)`` (a state it does not have comes back as it went in). ``h`` is the record (a tuple on the
  CPU, the device array on CUDA). ``cpu.py`` and ``cuda.py`` compile it inline into their loops.
- ``xp_update(xp, p, g, s0, s1, h)``: the same in Array API form, the reference (``reference.py``) and the
  specification the element functions are tested against.

The optimizer classes (``mlp_backend/optim/optimizers.py``) fold each step's scalars into the record; the
kernels, the reference and the record layout come from here. Adding an update rule is one entry (and a
class that folds its scalars).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .scalar_math import typed

# Slots every rule has. ``skip`` (0 or 1) makes the kernel leave parameters and state as they are: the step
# program sets it on the device when a loss is not finite, so no host read is needed before the update.
COMMON = ("lr", "l2", "grad_scale", "clip", "skip")
LR, L2, GRAD_SCALE, CLIP, SKIP = range(len(COMMON))


def slots(fields: tuple) -> range:
    """The record indices of a rule's own ``fields``, after the common ones."""
    return range(len(COMMON), len(COMMON) + len(fields))


@dataclass(frozen=True)
class Rule:
    name: str
    fields: tuple
    state: tuple
    element: Callable
    xp_update: Callable
    doc: str
    # whether the CPU kernels store a state below the dtype's smallest normal number as zero (``cpu.py``): where the
    # parameter's step is proportional to the state (or the state sits beside eps in a denominator), a subnormal
    # state moves nothing; Lion steps by the state's sign, so its states are kept as they are
    flushes_subnormal_states: bool = True

    @property
    def record(self) -> tuple:
        return COMMON + self.fields


def effective_grad(g, p, h):
    """``clip(g * grad_scale, -clip, clip) + l2 * p`` (clip is inf when off)."""
    g = g * h[GRAD_SCALE]
    c = h[CLIP]
    g = -c if g < -c else (c if g > c else g)
    return g + h[L2] * p


def xp_effective_grad(xp, g, p, h):
    g = g * h[GRAD_SCALE]
    g = xp.minimum(xp.maximum(g, -h[CLIP]), h[CLIP])
    return g + h[L2] * p


# ``1 - beta`` is a slot of its own: computed in the kernel it would need a literal 1, which promotes float32
# arithmetic to float64.

# -- SGD, momentum, Nesterov ------------------------------------------------------------------------------
def sgd_element(p, g, s0, s1, h):
    return p - h[LR] * effective_grad(g, p, h), s0, s1


def sgd_xp(xp, p, g, s0, s1, h):
    return p - h[LR] * xp_effective_grad(xp, g, p, h), s0, s1


MOMENTUM_FIELDS = ("momentum",)
(MOMENTUM,) = slots(MOMENTUM_FIELDS)


def momentum_element(p, g, v, s1, h):
    v = h[MOMENTUM] * v - h[LR] * effective_grad(g, p, h)
    return p + v, v, s1


def momentum_xp(xp, p, g, v, s1, h):
    v = h[MOMENTUM] * v - h[LR] * xp_effective_grad(xp, g, p, h)
    return p + v, v, s1


def nesterov_element(p, g, v, s1, h):
    g = effective_grad(g, p, h)
    v = h[MOMENTUM] * v - h[LR] * g
    return p + (h[MOMENTUM] * v - h[LR] * g), v, s1


def nesterov_xp(xp, p, g, v, s1, h):
    g = xp_effective_grad(xp, g, p, h)
    v = h[MOMENTUM] * v - h[LR] * g
    return p + (h[MOMENTUM] * v - h[LR] * g), v, s1


# -- RMSProp, Adagrad ---------------------------------------------------------------------------------------
RMSPROP_FIELDS = ("rho", "one_minus_rho", "eps")
RHO, ONE_MINUS_RHO, RMS_EPS = slots(RMSPROP_FIELDS)


def rmsprop_element(p, g, s, s1, h):
    g = effective_grad(g, p, h)
    s = h[RHO] * s + h[ONE_MINUS_RHO] * g * g
    return p - h[LR] * g / (math.sqrt(s) + h[RMS_EPS]), s, s1


def rmsprop_xp(xp, p, g, s, s1, h):
    g = xp_effective_grad(xp, g, p, h)
    s = h[RHO] * s + h[ONE_MINUS_RHO] * g * g
    return p - h[LR] * g / (xp.sqrt(s) + h[RMS_EPS]), s, s1


ADAGRAD_FIELDS = ("eps",)
(ADAGRAD_EPS,) = slots(ADAGRAD_FIELDS)


def adagrad_element(p, g, s, s1, h):
    g = effective_grad(g, p, h)
    s = s + g * g
    return p - h[LR] * g / (math.sqrt(s) + h[ADAGRAD_EPS]), s, s1


def adagrad_xp(xp, p, g, s, s1, h):
    g = xp_effective_grad(xp, g, p, h)
    s = s + g * g
    return p - h[LR] * g / (xp.sqrt(s) + h[ADAGRAD_EPS]), s, s1


# -- Adam, AdamW, Lion ---------------------------------------------------------------------------------------
ADAM_FIELDS = ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "eps", "step_size", "inv_sqrt_bias2", "decay")
BETA1, ONE_MINUS_BETA1, BETA2, ONE_MINUS_BETA2, ADAM_EPS, STEP_SIZE, INV_SQRT_BIAS2, DECAY = slots(ADAM_FIELDS)


def adam_element(p, g, m, v, h):
    g = effective_grad(g, p, h)
    m = h[BETA1] * m + h[ONE_MINUS_BETA1] * g
    v = h[BETA2] * v + h[ONE_MINUS_BETA2] * g * g
    return h[DECAY] * p - h[STEP_SIZE] * m / (math.sqrt(v) * h[INV_SQRT_BIAS2] + h[ADAM_EPS]), m, v


def adam_xp(xp, p, g, m, v, h):
    g = xp_effective_grad(xp, g, p, h)
    m = h[BETA1] * m + h[ONE_MINUS_BETA1] * g
    v = h[BETA2] * v + h[ONE_MINUS_BETA2] * g * g
    return h[DECAY] * p - h[STEP_SIZE] * m / (xp.sqrt(v) * h[INV_SQRT_BIAS2] + h[ADAM_EPS]), m, v


LION_FIELDS = ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "decay")
LION_BETA1, LION_ONE_MINUS_BETA1, LION_BETA2, LION_ONE_MINUS_BETA2, LION_DECAY = slots(LION_FIELDS)


def lion_element(p, g, m, s1, h):
    g = effective_grad(g, p, h)
    c = h[LION_BETA1] * m + h[LION_ONE_MINUS_BETA1] * g
    one = typed(1.0, c)
    sign = one if c > 0 else (-one if c < 0 else c - c)  # 0 at 0 and NaN at NaN, as sign()
    return h[LION_DECAY] * p - h[LR] * sign, h[LION_BETA2] * m + h[LION_ONE_MINUS_BETA2] * g, s1


def lion_xp(xp, p, g, m, s1, h):
    g = xp_effective_grad(xp, g, p, h)
    c = h[LION_BETA1] * m + h[LION_ONE_MINUS_BETA1] * g
    return h[LION_DECAY] * p - h[LR] * xp.sign(c), h[LION_BETA2] * m + h[LION_ONE_MINUS_BETA2] * g, s1


RULES = {r.name: r for r in (
    Rule("sgd", (), (), sgd_element, sgd_xp, "p -= lr g"),
    Rule("momentum", MOMENTUM_FIELDS, ("velocity",), momentum_element, momentum_xp,
         "v = momentum v - lr g; p += v"),
    Rule("nesterov", MOMENTUM_FIELDS, ("velocity",), nesterov_element, nesterov_xp,
         "v = momentum v - lr g; p += momentum v - lr g"),
    Rule("rmsprop", RMSPROP_FIELDS, ("square_avg",), rmsprop_element, rmsprop_xp,
         "s = rho s + (1 - rho) g^2; p -= lr g / (sqrt(s) + eps)"),
    Rule("adagrad", ADAGRAD_FIELDS, ("sum",), adagrad_element, adagrad_xp,
         "s += g^2; p -= lr g / (sqrt(s) + eps), lr decayed per step by the optimizer (torch.optim.Adagrad)"),
    Rule("adam", ADAM_FIELDS, ("exp_avg", "exp_avg_sq"), adam_element, adam_xp,
         "p = decay p - step_size m / (sqrt(v) inv_sqrt_bias2 + eps): Adam's bias corrections folded into "
         "step_size and inv_sqrt_bias2; decay is AdamW's 1 - lr wd (1 for Adam)"),
    Rule("lion", LION_FIELDS, ("exp_avg",), lion_element, lion_xp,
         "p = decay p - lr sign(beta1 m + (1 - beta1) g); m = beta2 m + (1 - beta2) g (Chen et al. 2023)",
         flushes_subnormal_states=False),
)}
NAMES = tuple(RULES)
CODES = {name: i for i, name in enumerate(NAMES)}  # the kernels' compile-time rule codes
