"""Normalisation layers over the feature axis of (N, F) input, with learnable scale and shift."""
from __future__ import annotations

import numpy as np

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

    def _normalise(self, x, mean, var, axis):
        xp = self.be.xp
        self._inv_std = 1.0 / xp.sqrt(var + self.eps)
        self._xhat = (x - mean) * self._inv_std
        self._axis = axis
        return self._xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dy, need_input_grad=True):
        xp, axis, xhat = self.be.xp, self._axis, self._xhat
        self.be.compute("sum", dy * xhat, axis=0, out=self.grads["gamma"])
        self.be.compute("sum", dy, axis=0, out=self.grads["beta"])
        if not need_input_grad:
            return None
        if axis is None:  # BatchNorm in eval mode: a fixed affine map
            return dy * (self.params["gamma"] * self._inv_std)
        dxhat = dy * self.params["gamma"]
        # d/dx of (x - mean) / std with batch statistics along `axis`
        return self._inv_std * (dxhat - xp.mean(dxhat, axis=axis, keepdims=True)
                                - xhat * xp.mean(dxhat * xhat, axis=axis, keepdims=True))


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
        xp = self.be.xp
        if not training:
            return self._normalise(x, self.buffers["running_mean"], self.buffers["running_var"], None)
        n = x.shape[0]
        if n < 2:
            raise ValueError("BatchNorm1d needs at least 2 samples per batch in training")
        mean = xp.mean(x, axis=0)
        var = xp.var(x, axis=0)
        m = self.momentum
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        rm[...] = (1 - m) * rm + m * mean
        rv[...] = (1 - m) * rv + m * var * (n / (n - 1))  # running variance is unbiased, as in torch
        return self._normalise(x, mean, var, 0)


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
        xp = self.be.xp
        mean = xp.mean(x, axis=1, keepdims=True)
        var = xp.var(x, axis=1, keepdims=True)
        return self._normalise(x, mean, var, 1)
