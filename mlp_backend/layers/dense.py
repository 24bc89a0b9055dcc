"""Fully connected layer ``y = act(x W + b)``: one matmul and one fused pass each way."""
from __future__ import annotations

import math
from typing import Callable

from ..initializers import get_initializer
from ..kernels.activations import TABLE
from .activations import check_activation
from .base import Layer


class Dense(Layer):
    """Fully connected layer ``y = f(x W + b)`` with the activation ``f`` fused into its kernels.

    N-d input is flattened to (N, in_features); the input gradient comes back in the input's shape.

    Parameters
    ----------
    in_features : int
        Input size.
    out_features : int
        Output size. ``W`` is (in_features, out_features), ``b`` (out_features,).
    activation : str, optional
        Any activation of the table (``"relu"``, ``"tanh"``, ...); None: identity.
    alpha : float, optional
        The activation's parameter (leaky_relu's slope, elu's alpha); default: the table's.
    init : str or callable, default "auto"
        Weight initialiser, as :func:`build_mlp`'s ``init``.
    bias_init : str or callable, default "zeros"
        Bias initialiser.
    use_bias : bool, default True
        Whether the layer has a bias.
    """

    kind = "dense"

    def __init__(self, in_features: int, out_features: int, activation: str | None = None, alpha: float | None = None,
                 init: str | Callable = "auto", bias_init: str | Callable = "zeros", use_bias: bool = True):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Dense {name} must be a positive integer, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        self.activation, self.alpha = check_activation(activation or "identity", alpha)
        self.init, self.bias_init, self.use_bias = init, bias_init, use_bias
        self._w_init = get_initializer(init, self.activation)
        self._b_init = get_initializer(bias_init, self.activation)

    def param_shapes(self):
        shapes = {"W": (self.in_features, self.out_features)}
        if self.use_bias:
            shapes["b"] = (self.out_features,)
        return shapes

    def output_features(self, in_features):
        if in_features is not None and in_features != self.in_features:
            raise ValueError(f"Dense expects {self.in_features} input features, the previous layer gives {in_features}")
        return self.out_features

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "activation": self.activation,
                "alpha": self.alpha, "init": self.init if isinstance(self.init, str) else "custom",
                "bias_init": self.bias_init if isinstance(self.bias_init, str) else "custom",
                "use_bias": self.use_bias}

    def init_params(self):
        fan_in, fan_out = self.in_features, self.out_features
        self.params["W"][...] = self._w_init(self.be, (fan_in, fan_out), fan_in, fan_out)
        if self.use_bias:
            self.params["b"][...] = self._b_init(self.be, (fan_out,), fan_in, fan_out)

    def forward(self, x, training=False):
        xp = self.be.xp
        self._in_shape = x.shape
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], math.prod(x.shape[1:])))
        if x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects {self.in_features} input features, got {x.shape[1]}")
        self._x = x
        W, b, z = self.params["W"], self.params.get("b"), self.scratch("z", (x.shape[0], self.out_features))
        if TABLE[self.activation].saves == "output":  # the backward needs y only: bias and activation fused
            self._saved = y = self.be.matmul_bias_act(self.ops, x, W, b, self.activation, self.alpha, out=z)
        else:  # it needs z = x W + b: keep a copy before the activation overwrites it
            z = self.be.matmul_bias_act(self.ops, x, W, b, "identity", out=z)
            self._saved = self.be.copy(z, out=self.scratch("saved", z.shape))
            y = self.ops.bias_act(xp, z, None, self.activation, self.alpha)
        return y

    def backward(self, dy, need_input_grad=True):
        xp, be = self.be.xp, self.be
        # one fused pass: dz and, from the same pass, the bias gradient
        dz = self.ops.act_backward(xp, dy, self._saved, self.activation, self.alpha, out=self.scratch("dz", dy.shape),
                                   bias_grad=self.grads.get("b"))
        be.compute("matmul", self._x.T, dz, out=self.grads["W"])
        if not need_input_grad:
            return None
        dx = be.compute("matmul", dz, self.params["W"].T, out=self.scratch("dx", self._x.shape))
        return dx if len(self._in_shape) == 2 else xp.reshape(dx, self._in_shape)
