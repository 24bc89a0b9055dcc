"""The activation table: every activation defined once, here.

Each entry gives
- ``forward(z, alpha)`` and ``derivative(dy, saved, alpha)``: scalar element functions in plain Python.
  ``cpu.py`` compiles them into its fused loops, ``cuda.py`` into its kernels; the same functions are
  what a GEMM epilogue would call. They use only ``math``-style operations and the ``fast_*`` functions
  of ``scalar_math.py`` (each target supplies its own implementation), and derive constants from
  ``alpha`` (``alpha - alpha`` is a zero of the data's dtype) so float32 loops stay float32.
- ``xp_forward(xp, z, alpha)`` and ``xp_derivative(xp, dy, saved, alpha)``: the Array API form, which is
  the reference (``reference.py``) and the specification the element functions are tested against.
- ``saves``: what the derivative reads. ``"output"`` (the activation's output ``y``) lets a layer keep
  one array and work in place; ``"input"`` (the pre-activation ``z``) is for activations whose
  derivative is not a function of their output (GELU).
- ``alpha``: the default of the activation's parameter (None when it takes none), ``alpha_name`` the
  name its layer class gives it, ``init``: the initialiser ``init="auto"`` picks.
- ``onnx``: the ONNX operator that computes it (its parameter, if any, as the attribute ``alpha``);
  ``torch_kwargs``: fixed arguments of the ``torch.nn`` class of the same name as ``layer`` (the parameter
  goes by ``alpha_name``, which is torch's name for it). ``mlp_backend.export`` reads both.

Everything else (layer classes, the kernels' dispatch, initializer defaults, the activation gallery,
the tests' coverage) is generated from or checked against ``TABLE``. Adding an activation is one entry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .scalar_math import fast_exp, fast_expm1, fast_tanh, typed

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_K = 0.7978845608028654  # sqrt(2 / pi)
GELU_C = 0.044715


@dataclass(frozen=True)
class ActivationDef:
    name: str
    layer: str  # the layer class's name (mlp_backend.ReLU, ...)
    forward: Callable
    derivative: Callable
    xp_forward: Callable
    xp_derivative: Callable
    doc: str
    saves: str = "output"
    alpha: float | None = None
    alpha_name: str = "alpha"
    init: str = "glorot_uniform"
    onnx: str = "Identity"
    torch_kwargs: tuple = ()


# -- element functions (scalars) ----------------------------------------------------------------
def identity_forward(z, alpha):
    return z


def identity_derivative(dy, y, alpha):
    return dy


def relu_forward(z, alpha):
    return alpha - alpha if z < 0 else z  # NaN stays NaN, as with maximum()


def relu_derivative(dy, y, alpha):
    return dy if y > 0 else alpha - alpha


def leaky_relu_forward(z, alpha):
    return z if z > 0 else alpha * z


def leaky_relu_derivative(dy, y, alpha):
    return dy if y > 0 else alpha * dy


def sigmoid_forward(z, alpha):
    one = typed(1.0, z)
    e = fast_exp(-abs(z))  # exp of a non-positive number only: no overflow
    return one / (one + e) if z >= 0 else e / (one + e)


def sigmoid_derivative(dy, y, alpha):
    return dy * y - dy * y * y  # dy * y * (1 - y) without a float64 literal in float32 code


def tanh_forward(z, alpha):
    return fast_tanh(z)


def tanh_derivative(dy, y, alpha):
    return dy - dy * y * y


def elu_forward(z, alpha):
    return z if z > 0 else alpha * fast_expm1(z)


def elu_derivative(dy, y, alpha):
    return dy if y > 0 else dy * (y + alpha)


def selu_forward(z, alpha):
    return z * typed(SELU_SCALE, z) if z > 0 else fast_expm1(z) * typed(SELU_SCALE * SELU_ALPHA, z)


def selu_derivative(dy, y, alpha):
    return typed(SELU_SCALE, dy) * dy if y > 0 else dy * (y + typed(SELU_SCALE * SELU_ALPHA, dy))


def gelu_forward(z, alpha):
    # 0.5 z (1 + tanh(u)) = z sigmoid(2u): no cancellation where tanh(u) is near -1
    return z * sigmoid_forward(typed(2 * GELU_K, z) * (z + typed(GELU_C, z) * z * z * z), alpha)


def gelu_derivative(dy, z, alpha):
    two_k, c, one = typed(2 * GELU_K, z), typed(GELU_C, z), typed(1.0, z)
    s = sigmoid_forward(two_k * (z + c * z * z * z), alpha)
    return dy * (s + z * s * (one - s) * two_k * (one + typed(3 * GELU_C, z) * z * z))


# -- Array API forms (the reference) ------------------------------------------------------------
def _xp_sigmoid(xp, z, alpha):
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _xp_gelu_gate(xp, z):
    """sigmoid(2u) = (1 + tanh(u)) / 2 for GELU's u = sqrt(2/pi) (z + 0.044715 z^3)."""
    return _xp_sigmoid(xp, 2.0 * GELU_K * (z + GELU_C * z * z * z), 0.0)


def _xp_gelu_derivative(xp, dy, z, alpha):
    s = _xp_gelu_gate(xp, z)
    return dy * (s + 2.0 * z * s * (1.0 - s) * GELU_K * (1.0 + 3.0 * GELU_C * z * z))


TABLE = {a.name: a for a in (
    ActivationDef("identity", "Identity", identity_forward, identity_derivative,
                  lambda xp, z, alpha: z,
                  lambda xp, dy, y, alpha: dy,
                  "Identity: y = x."),
    ActivationDef("relu", "ReLU", relu_forward, relu_derivative,
                  lambda xp, z, alpha: xp.maximum(z, 0.0),
                  lambda xp, dy, y, alpha: xp.where(y > 0, dy, 0.0),
                  "ReLU: max(x, 0).", init="he_uniform", onnx="Relu"),
    ActivationDef("leaky_relu", "LeakyReLU", leaky_relu_forward, leaky_relu_derivative,
                  lambda xp, z, alpha: xp.where(z > 0, z, alpha * z),
                  lambda xp, dy, y, alpha: xp.where(y > 0, dy, alpha * dy),
                  "LeakyReLU: x if x > 0 else negative_slope * x.", alpha=0.01, alpha_name="negative_slope",
                  init="he_uniform", onnx="LeakyRelu"),
    ActivationDef("sigmoid", "Sigmoid", sigmoid_forward, sigmoid_derivative,
                  _xp_sigmoid,
                  lambda xp, dy, y, alpha: dy * y * (1.0 - y),
                  "Sigmoid: 1 / (1 + exp(-x)), computed without overflow.", onnx="Sigmoid"),
    ActivationDef("tanh", "Tanh", tanh_forward, tanh_derivative,
                  lambda xp, z, alpha: xp.tanh(z),
                  lambda xp, dy, y, alpha: dy * (1.0 - y * y),
                  "Tanh: hyperbolic tangent.", onnx="Tanh"),
    ActivationDef("elu", "ELU", elu_forward, elu_derivative,
                  lambda xp, z, alpha: xp.where(z > 0, z, alpha * xp.expm1(xp.minimum(z, 0.0))),
                  lambda xp, dy, y, alpha: xp.where(y > 0, dy, dy * (y + alpha)),
                  "ELU: x if x > 0 else alpha * (exp(x) - 1).", alpha=1.0, init="he_uniform", onnx="Elu"),
    ActivationDef("selu", "SELU", selu_forward, selu_derivative,
                  lambda xp, z, alpha: SELU_SCALE * xp.where(z > 0, z, SELU_ALPHA * xp.expm1(xp.minimum(z, 0.0))),
                  lambda xp, dy, y, alpha: xp.where(y > 0, SELU_SCALE * dy, dy * (y + SELU_SCALE * SELU_ALPHA)),
                  "SELU: scale * (x if x > 0 else alpha * (exp(x) - 1)), self-normalising constants.",
                  init="lecun_normal", onnx="Selu"),
    ActivationDef("gelu", "GELU", gelu_forward, gelu_derivative,
                  lambda xp, z, alpha: z * _xp_gelu_gate(xp, z),
                  _xp_gelu_derivative,
                  "GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) "
                  "(torch's approximate='tanh', jax.nn.gelu's default).",
                  saves="input", init="he_uniform", onnx="Gelu", torch_kwargs=(("approximate", "tanh"),)),
)}
ACTIVATIONS = tuple(TABLE)
CODES = {name: i for i, name in enumerate(ACTIVATIONS)}  # the kernels' compile-time activation codes


def get(name) -> ActivationDef:
    if not isinstance(name, str) or name not in TABLE:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return TABLE[name]


def check(name, alpha: float | None = None) -> tuple[str, float]:
    """Validated ``(name, alpha)``; ``alpha`` defaults per activation (leaky_relu 0.01, elu 1.0)."""
    act = get(name)
    if alpha is None:
        alpha = act.alpha if act.alpha is not None else 0.0
    alpha = float(alpha)
    if act.alpha is not None and not (alpha >= 0 and math.isfinite(alpha)):
        raise ValueError(f"{name} needs a non-negative alpha, got {alpha}")
    return name, alpha
