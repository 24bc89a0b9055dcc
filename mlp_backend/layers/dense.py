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
    plans_its_step = True

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
        if plan is not None:  # the calls of an earlier step with these very arrays (Workspace.planned)
            calls, self._x, self._saved, y = plan
            ws.run(calls)
            self._in_shape = x.shape
            return y
        xp = self.be.xp
        self._in_shape = x.shape
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], math.prod(x.shape[1:])))
        if x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects {self.in_features} input features, got {x.shape[1]}")
        self._x = x
        out = self.scratch("z", (x.shape[0], self.out_features))
        if TABLE[self.activation].saves == "output":  # the backward needs y only: bias and activation fused
            self._saved = y = self.be.matmul_bias_act(self.ops, x, W, b, self.activation, self.alpha, out=out)
        else:  # it needs z = x W + b: keep a copy before the activation overwrites it
            z = self.be.matmul_bias_act(self.ops, x, W, b, "identity", out=out)
            self._saved = self.be.copy(z, out=self.scratch("saved", z.shape))
            y = self.ops.bias_act(xp, z, None, self.activation, self.alpha)
        if ws is not None:
            ws.keep_plan(self, "forward", key, lambda: self._forward_plan(x, W, b, out, y))
        return y

    def _forward_plan(self, x, W, b, out, y):
        """The forward's calls bound to the arrays it just used, with the arrays they leave; None where a call does
        not bind or did not write into ``out``."""
        be, ops, act, alpha = self.be, self.ops, self.activation, self.alpha
        if y is not out:
            return None
        if TABLE[act].saves == "output":
            calls = be.bind_matmul_bias_act(ops, x, W, b, act, alpha, out=out)
        else:
            calls = be.bind_matmul_bias_act(ops, x, W, b, "identity", out=out)
            calls = calls and (*calls, be.bind("copyto", self._saved, out), bind(ops.bias_act, be.xp, out, None, act,
                                                                                  alpha))
        return None if not calls or None in calls else (calls, x, self._saved, y)

    def backward(self, dy, need_input_grad=True):
        W, gW, gb, ws = self.params["W"], self.grads["W"], self.grads.get("b"), self.workspace
        key = (dy, self._x, self._saved, W, gW, gb, self.ops, self.activation, self.alpha, need_input_grad)
        plan = None if ws is None else ws.planned(self, "backward", key)
        if plan is not None:
            calls, dx = plan
            ws.run(calls)
            return dx
        xp, be = self.be.xp, self.be
        # one fused pass: dz and, from the same pass, the bias gradient
        out = self.scratch("dz", dy.shape)
        dz = self.ops.act_backward(xp, dy, self._saved, self.activation, self.alpha, out=out, bias_grad=gb)
        be.compute("matmul", self._x.T, dz, out=gW)
        into = dx = None
        if need_input_grad:
            into = self.scratch("dx", self._x.shape)
            dx = be.compute("matmul", dz, W.T, out=into)
        result = dx if dx is None or len(self._in_shape) == 2 else xp.reshape(dx, self._in_shape)
        if ws is not None:
            ws.keep_plan(self, "backward", key, lambda: self._backward_plan(dy, dz, out, dx, into, result))
        return result

    def _backward_plan(self, dy, dz, out, dx, into, result):
        """The backward's calls bound to the arrays it just used, with the input gradient they leave; None where a
        call does not bind or did not write into its scratch array."""
        be, xp = self.be, self.be.xp
        if dz is not out or dx is not into:
            return None
        calls = (bind(self.ops.act_backward, xp, dy, self._saved, self.activation, self.alpha, out=out,
                      bias_grad=self.grads.get("b")),
                 be.bind("matmul", self._x.T, dz, out=self.grads["W"]),
                 *([] if dx is None else [be.bind("matmul", dz, self.params["W"].T, out=into)]))
        return None if None in calls else (calls, result)
