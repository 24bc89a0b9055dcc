"""Fully connected layer ``y = act(x W + b)``: one matmul and one fused pass each way."""
from __future__ import annotations

import math
from typing import Callable

from ..initializers import get_initializer
from ..kernels import bind
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
        W, b, ws = self.params["W"], self.params.get("b"), self.workspace
        key = (x, W, b, self.ops, self.activation, self.alpha)
        plan = None if ws is None else ws.planned(self, "forward", key)
        if plan is not None:  # the calls of the last step with these very arrays (Workspace.planned)
            calls, self._x, self._saved, y = plan
            for call in calls:
                call()
            self._in_shape = x.shape
            return y
        xp, be, ops = self.be.xp, self.be, self.ops
        self._in_shape = x.shape
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], math.prod(x.shape[1:])))
        if x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects {self.in_features} input features, got {x.shape[1]}")
        self._x = x
        z = self.scratch("z", (x.shape[0], self.out_features))
        if TABLE[self.activation].saves == "output":  # the backward needs y only: bias and activation fused
            self._saved = y = be.matmul_bias_act(ops, x, W, b, self.activation, self.alpha, out=z)
            calls = None if ws is None else be.bind_matmul_bias_act(ops, x, W, b, self.activation, self.alpha, out=z)
        else:  # it needs z = x W + b: keep a copy before the activation overwrites it
            z = be.matmul_bias_act(ops, x, W, b, "identity", out=z)
            self._saved = be.copy(z, out=self.scratch("saved", z.shape))
            y = ops.bias_act(xp, z, None, self.activation, self.alpha)
            calls = None if ws is None else be.bind_matmul_bias_act(ops, x, W, b, "identity", out=z)
            calls = calls and (*calls, be.bind("copyto", self._saved, z),
                               bind(ops.bias_act, xp, z, None, self.activation, self.alpha))
        if calls and None not in calls and y is z:  # every call bound, and each writes where it did here
            ws.keep_plan(self, "forward", key, (calls, self._x, self._saved, y))
        return y

    def backward(self, dy, need_input_grad=True):
        W, gW, gb, ws = self.params["W"], self.grads["W"], self.grads.get("b"), self.workspace
        key = (dy, self._x, self._saved, W, gW, gb, self.ops, self.activation, self.alpha, need_input_grad)
        plan = None if ws is None else ws.planned(self, "backward", key)
        if plan is not None:
            calls, dx = plan
            for call in calls:
                call()
            return dx
        xp, be, ops = self.be.xp, self.be, self.ops
        # one fused pass: dz and, from the same pass, the bias gradient
        out = self.scratch("dz", dy.shape)
        dz = ops.act_backward(xp, dy, self._saved, self.activation, self.alpha, out=out, bias_grad=gb)
        x_t = self._x.T
        be.compute("matmul", x_t, dz, out=gW)
        calls = None
        if ws is not None and dz is out:
            calls = [bind(ops.act_backward, xp, dy, self._saved, self.activation, self.alpha, out=out, bias_grad=gb),
                     be.bind("matmul", x_t, dz, out=gW)]
        dx = None
        if need_input_grad:
            w_t, into = W.T, self.scratch("dx", self._x.shape)
            dx = be.compute("matmul", dz, w_t, out=into)
            if calls is not None:
                calls.append(be.bind("matmul", dz, w_t, out=into) if dx is into else None)
            if len(self._in_shape) != 2:
                dx = xp.reshape(dx, self._in_shape)
        if calls is not None and None not in calls:  # every call bound, each writing where it did here
            ws.keep_plan(self, "backward", key, (tuple(calls), dx))
        return dx
