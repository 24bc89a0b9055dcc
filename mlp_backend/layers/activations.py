"""Activation layers, one class per entry of the activation table (``kernels/activations.py``).

``Activation("gelu")`` is the general layer; ``ACTIVATION_LAYERS`` holds the named classes generated from
the table (``ReLU``, ``LeakyReLU(negative_slope=...)``, ``ELU(alpha=...)``, ``GELU``, ...), exported by
``mlp_backend.layers``. The maths lives in the table; this file only keeps what the backward pass needs.
"""
from __future__ import annotations

from ..kernels import activations as table
from ..kernels import reference
from .base import Layer

check_activation = table.check


class Activation(Layer):
    """Elementwise activation by name, from the activation table.

    Its gradient is computed from the array the table says it saves (its output for most, its input for GELU).
    ``mlp_backend.ReLU()``, ``mlp_backend.Tanh()``, ... are this layer with the name fixed.

    Parameters
    ----------
    activation : str
        ``"relu"``, ``"leaky_relu"``, ``"elu"``, ``"selu"``, ``"gelu"`` (tanh approximation), ``"sigmoid"``,
        ``"tanh"`` or ``"identity"``.
    alpha : float, optional
        The activation's parameter (leaky_relu's slope, default 0.01; elu's alpha, default 1.0).
    """

    def __init__(self, activation: str, alpha: float | None = None):
        super().__init__()
        self.activation, self.alpha = check_activation(activation, alpha)
        self.kind = self.activation.replace("_", "")

    def config(self):
        return {"activation": self.activation, "alpha": self.alpha}

    def forward(self, x, training=False):
        # bias_act works in place, so it gets a copy: x may be the caller's data.
        y = self.be.copy(x, out=self.scratch("y", x.shape))
        y = self.ops.bias_act(self.be.xp, y, None, self.activation, self.alpha)
        self._saved = y if table.TABLE[self.activation].saves == "output" else x
        return y

    def backward(self, dy, need_input_grad=True):
        return self.ops.act_backward(self.be.xp, dy, self._saved, self.activation, self.alpha,
                                     out=self.scratch("dx", dy.shape))


def _layer_class(act: table.ActivationDef) -> type:
    """The named layer class of one table entry: no arguments, or its parameter by the entry's name for it."""
    if act.alpha is None:
        def __init__(self):
            Activation.__init__(self, act.name)

        def config(self):
            return {}
    else:
        def __init__(self, **kw):
            unknown = set(kw) - {act.alpha_name}
            if unknown:
                raise TypeError(f"{act.layer}() got unexpected keyword arguments {sorted(unknown)}")
            Activation.__init__(self, act.name, kw.get(act.alpha_name))

        def config(self):
            return {act.alpha_name: self.alpha}
    return type(act.layer, (Activation,), {"__init__": __init__, "config": config, "__doc__": act.doc,
                                           "__module__": __name__})


ACTIVATION_LAYERS = {act.layer: _layer_class(act) for act in table.TABLE.values()}
globals().update(ACTIVATION_LAYERS)


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
