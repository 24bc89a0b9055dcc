"""Activation layers. The maths lives in the kernels (reference: ``kernels/reference.py``)."""
from __future__ import annotations

from ..kernels import reference
from ..kernels.reference import ACTIVATIONS
from .base import Layer

_DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}


def check_activation(name: str, alpha: float | None = None) -> tuple[str, float]:
    """Validated ``(name, alpha)``; ``alpha`` defaults per activation (leaky_relu 0.01, elu 1.0)."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    if alpha is None:
        alpha = _DEFAULT_ALPHA.get(name, 0.0)
    alpha = float(alpha)
    if name in _DEFAULT_ALPHA and not alpha >= 0:
        raise ValueError(f"{name} needs a non-negative alpha, got {alpha}")
    return name, alpha


class Activation(Layer):
    """Elementwise activation by name; its gradient is computed from the output it keeps."""

    def __init__(self, activation: str, alpha: float | None = None):
        super().__init__()
        self.activation, self.alpha = check_activation(activation, alpha)
        self.kind = self.activation.replace("_", "")

    def config(self):
        return {"activation": self.activation, "alpha": self.alpha}

    def forward(self, x, training=False):
        xp = self.be.xp
        # bias_act works in place, so it gets a copy: x may be the caller's data.
        self._y = self.ops.bias_act(xp, xp.asarray(x, copy=True), None, self.activation, self.alpha)
        return self._y

    def backward(self, dy, need_input_grad=True):
        return self.ops.act_backward(self.be.xp, dy, self._y, self.activation, self.alpha)


def _named(cls_name: str, name: str, doc: str, with_alpha: str | None = None):
    if with_alpha:
        def __init__(self, **kw):
            kw = {("alpha" if k == with_alpha else k): v for k, v in kw.items()}
            Activation.__init__(self, name, **kw)

        def config(self):
            return {with_alpha: self.alpha}
    else:
        def __init__(self):
            Activation.__init__(self, name)

        def config(self):
            return {}
    return type(cls_name, (Activation,), {"__init__": __init__, "config": config, "__doc__": doc})


ReLU = _named("ReLU", "relu", "ReLU: max(x, 0).")
LeakyReLU = _named("LeakyReLU", "leaky_relu", "LeakyReLU: x if x > 0 else negative_slope * x.", with_alpha="negative_slope")
ELU = _named("ELU", "elu", "ELU: x if x > 0 else alpha * (exp(x) - 1).", with_alpha="alpha")
SELU = _named("SELU", "selu", "SELU: scale * (x if x > 0 else alpha * (exp(x) - 1)), self-normalising constants.")
Sigmoid = _named("Sigmoid", "sigmoid", "Sigmoid: 1 / (1 + exp(-x)), computed without overflow.")
Tanh = _named("Tanh", "tanh", "Tanh: hyperbolic tangent.")
Identity = _named("Identity", "identity", "Identity: y = x.")


class Softmax(Layer):
    """Softmax over the last axis with the exact backward ``dx = y * (dy - sum(dy * y))``.

    For classification prefer logits + ``SoftmaxCrossEntropy``, which fuses both and is stabler.
    """

    kind = "softmax"

    def forward(self, x, training=False):
        self._y = reference.softmax(self.be.xp, x)
        return self._y

    def backward(self, dy, need_input_grad=True):
        return reference.softmax_backward(self.be.xp, self._y, dy)
