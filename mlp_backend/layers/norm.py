"""Normalisation layers over the feature axis of (N, F) input, with learnable scale and shift."""
from __future__ import annotations

import numpy as np

from ..kernels import bind
from ..kernels.reference import inv_std_shape
from .base import Layer


class _Norm(Layer):
    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        self.num_features, self.eps = num_features, float(eps)

    def param_shapes(self):
        return {"gamma": (self.num_features,), "beta": (self.num_features,)}

    def init_params(self):
        self.params["gamma"][...] = self.be.asarray(np.ones(self.num_features))
        self.params["beta"][...] = self.be.zeros((self.num_features,))

    def output_features(self, in_features):
        if in_features is not None and in_features != self.num_features:
            raise ValueError(f"{type(self).__name__} expects {self.num_features} features, gets {in_features}")
        return in_features

    plans_its_step = True  # in training: its kernel set's norm_forward and norm_backward, bound to its arrays

    def _normalise(self, x, axis, running=None):
        """``x`` normalised by its own statistics over ``axis`` (the kernel set's ``norm_forward``), keeping what the
        backward needs in the step program's arrays."""
        if x.ndim != 2:
            raise ValueError(f"{type(self).__name__} takes (N, features) input, got shape {tuple(x.shape)}")
        gamma, beta, ws = self.params["gamma"], self.params["beta"], self.workspace
        self._axis = axis
        key = (x, gamma, beta, self.ops, self.eps, axis, *(running or ()))
        plan = None if ws is None else ws.planned(self, "forward", key)
        if plan is not None:  # an earlier step's call, bound to these very arrays (Workspace.planned)
            calls, y, self._xhat, self._inv_std = plan
            ws.run(calls)
            return y
        out = (self.scratch("y", x.shape), self.scratch("xhat", x.shape),
               self.scratch("inv_std", inv_std_shape(x.shape, axis)))
        out = None if out[0] is None else out
        y, self._xhat, self._inv_std = self.ops.norm_forward(self.be.xp, x, gamma, beta, self.eps, axis, running,
                                                             out=out)
        if ws is not None:
            ws.keep_plan(self, "forward", key, lambda: self._forward_plan(x, axis, running, out, y))
        return y

    def _forward_plan(self, x, axis, running, out, y):
        """The forward's call bound to the arrays it just used, with the arrays it leaves; None where it does not bind
        or did not write into the scratch arrays."""
        if out is None or y is not out[0]:
            return None
        call = bind(self.ops.norm_forward, self.be.xp, x, self.params["gamma"], self.params["beta"], self.eps, axis,
                    running, out=out)
        return None if call is None else ((call,), *out)

    def backward(self, dy, need_input_grad=True):
        gamma, dgamma, dbeta, ws = self.params["gamma"], self.grads["gamma"], self.grads["beta"], self.workspace
        if self._axis is None:  # BatchNorm in eval mode: a fixed affine map
            self.be.compute("sum", dy * self._xhat, axis=0, out=dgamma)
            self.be.compute("sum", dy, axis=0, out=dbeta)
            return dy * (gamma * self._inv_std) if need_input_grad else None
        key = (dy, self._xhat, self._inv_std, gamma, dgamma, dbeta, self.ops, self._axis, need_input_grad)
        plan = None if ws is None else ws.planned(self, "backward", key)
        if plan is not None:
            calls, dx = plan
            ws.run(calls)
            return dx
        into = self.scratch("dx", dy.shape) if need_input_grad else None
        dx = self.ops.norm_backward(self.be.xp, dy, self._xhat, self._inv_std, gamma, self._axis, dgamma, dbeta,
                                    need_input_grad, out=into)
        if ws is not None:
            ws.keep_plan(self, "backward", key, lambda: self._backward_plan(dy, need_input_grad, into, dx))
        return dx

    def _backward_plan(self, dy, need_input_grad, into, dx):
        """The backward's call bound to the arrays it just used, with the input gradient it leaves (None: not asked
        for); None where it does not bind or did not write into its scratch array."""
        if dx is not into or (need_input_grad and into is None):
            return None
        call = bind(self.ops.norm_backward, self.be.xp, dy, self._xhat, self._inv_std, self.params["gamma"],
                    self._axis, self.grads["gamma"], self.grads["beta"], need_input_grad, out=into)
        return None if call is None else ((call,), dx)


class BatchNorm1d(_Norm):
    """Batch normalisation (as torch.nn.BatchNorm1d): batch statistics in training, running ones in eval.

    Parameters
    ----------
    num_features : int
        Features per sample (the previous layer's output size).
    eps : float, default 1e-5
        Added to the variance.
    momentum : float, default 0.1
        Weight of each batch in the running statistics.
    """

    kind = "batchnorm"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps)
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"BatchNorm1d momentum must be in (0, 1], got {momentum!r}")
        self.momentum = float(momentum)

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def initial_buffers(self):
        return {"running_mean": np.zeros(self.num_features), "running_var": np.ones(self.num_features)}

    def forward(self, x, training=False):
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        if not training:  # a fixed affine map by the running statistics
            self._inv_std = 1.0 / self.be.xp.sqrt(rv + self.eps)
            self._xhat, self._axis = (x - rm) * self._inv_std, None
            return self._xhat * self.params["gamma"] + self.params["beta"]
        if x.shape[0] < 2:
            raise ValueError("BatchNorm1d needs at least 2 samples per batch in training")
        return self._normalise(x, 0, running=(rm, rv, self.momentum))


class LayerNorm(_Norm):
    """Layer normalisation over the features of each sample (as torch.nn.LayerNorm).

    Parameters
    ----------
    num_features : int
        Features per sample.
    eps : float, default 1e-5
        Added to the variance.
    """

    kind = "layernorm"

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps}

    def forward(self, x, training=False):
        return self._normalise(x, 1)
