"""Losses (value and gradient with respect to the model output in one call) and weight penalties.

A loss also says what kind of targets it takes (``task``) and how raw outputs become predictions
(``probabilities``), so ``predict_proba`` follows the loss the model was trained with.
"""
from __future__ import annotations

import math

from .kernels import reference


def _targets(xp, target, output):
    """Class targets as rows like ``output``: integer labels one-hot, soft targets as they are."""
    if target.ndim == 2:
        return target
    return xp.astype(target[:, None] == xp.arange(output.shape[1], device=output.device), output.dtype)


class Loss:
    name = "loss"
    task = "regression"  # 'multiclass', 'binary' or 'regression': decides target validation
    link = "identity"  # what ``probabilities`` applies, by name: identity, softmax, sigmoid or exp (for exporters)

    def value_and_grad(self, xp, ops, output, target):
        """``(loss, grad)``: mean loss as a 0-d array and its gradient with respect to ``output``.

        A loss may also take ``out=``, an array shaped like ``output`` that the gradient is written into
        (the step program passes one where the signature has it, so that a step allocates nothing).
        """
        raise NotImplementedError

    def per_sample(self, xp, output, target):
        """Each sample's loss, shape (N,): what sample weights weigh (the mean of it is ``value_and_grad``'s)."""
        raise NotImplementedError

    def all_in_ops(self, target) -> bool:
        """Whether ``value_and_grad`` computes everything through the ``ops`` it is given, for these targets: a step
        replayed as its bound calls (``StepCalls``) then makes those ops' calls, else the loss is one Python call."""
        return False

    def probabilities(self, xp, output):
        return output

    def config(self) -> dict:
        return {}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy on logits; integer labels (N,) use the fused kernel, (N, C) targets are soft labels.

    Parameters
    ----------
    label_smoothing : float, default 0.0
        Mix the one-hot targets with the uniform distribution by this much (as ``torch.nn.CrossEntropyLoss``).
    """

    name, task, link = "cross_entropy", "multiclass", "softmax"

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def config(self):
        return {"label_smoothing": self.label_smoothing}

    def all_in_ops(self, target):
        return target.ndim == 1

    def value_and_grad(self, xp, ops, output, target, out=None):
        if target.ndim == 1:
            return ops.softmax_cross_entropy(xp, output, target, self.label_smoothing, out=out)
        n, c = output.shape
        target = (1.0 - self.label_smoothing) * target + self.label_smoothing / c
        logp = reference.log_softmax(xp, output)
        loss = -xp.sum(xp.where(target > 0, target * logp, 0.0)) / n
        return loss, (xp.exp(logp) * xp.sum(target, axis=1, keepdims=True) - target) / n

    def per_sample(self, xp, output, target):
        c = output.shape[1]
        target = (1.0 - self.label_smoothing) * _targets(xp, target, output) + self.label_smoothing / c
        logp = reference.log_softmax(xp, output)
        return -xp.sum(xp.where(target > 0, target * logp, 0.0), axis=1)

    def probabilities(self, xp, output):
        return reference.softmax(xp, output)


class MeanSquaredError(Loss):
    """Mean of squared errors over all elements (regression; identity output)."""

    name = "mse"

    def value_and_grad(self, xp, ops, output, target):
        diff = output - xp.reshape(target, output.shape)
        return xp.mean(diff * diff), (2.0 / math.prod(diff.shape)) * diff

    def per_sample(self, xp, output, target):
        diff = xp.reshape(output - xp.reshape(target, output.shape), (output.shape[0], -1))
        return xp.mean(diff * diff, axis=1)


class SoftmaxMeanSquaredError(Loss):
    """MSE between softmax probabilities and one-hot labels: the coursework's comparison with cross-entropy."""

    name, task, link = "softmax_mse", "multiclass", "softmax"

    def value_and_grad(self, xp, ops, output, target):
        p = reference.softmax(xp, output)
        diff = p - _targets(xp, target, output)
        dp = (2.0 / math.prod(diff.shape)) * diff
        return xp.mean(diff * diff), reference.softmax_backward(xp, p, dp)

    def per_sample(self, xp, output, target):
        diff = reference.softmax(xp, output) - _targets(xp, target, output)
        return xp.mean(diff * diff, axis=1)

    def probabilities(self, xp, output):
        return reference.softmax(xp, output)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits (sigmoid folded in), targets 0/1 shaped like the output."""

    name, task, link = "bce", "binary", "sigmoid"

    def value_and_grad(self, xp, ops, output, target, out=None):
        return ops.sigmoid_binary_cross_entropy(xp, output, xp.reshape(target, output.shape), out=out)

    def per_sample(self, xp, output, target):
        z, t = xp.reshape(output, (output.shape[0], -1)), xp.reshape(target, (output.shape[0], -1))
        return xp.mean(xp.maximum(z, 0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z))), axis=1)

    def probabilities(self, xp, output):
        return reference.activation(xp, output, "sigmoid")


LOSSES = {cls.name: cls for cls in (SoftmaxCrossEntropy, MeanSquaredError, SoftmaxMeanSquaredError, BinaryCrossEntropy)}
_ALIASES = {"ce": "cross_entropy", "crossentropy": "cross_entropy", "softmax_cross_entropy": "cross_entropy",
            "binary_cross_entropy": "bce", "mean_squared_error": "mse"}


def get_loss(loss: str | Loss) -> Loss:
    """A Loss from an instance (returned as is) or a name.

    Parameters
    ----------
    loss : str or Loss
        ``"cross_entropy"``, ``"mse"``, ``"softmax_mse"``, ``"bce"`` (binary cross-entropy with logits), or a Loss.

    Returns
    -------
    Loss
        The loss.
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        key = _ALIASES.get(loss.lower(), loss.lower())
        if key in LOSSES:
            return LOSSES[key]()
    raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


class L2:
    """``0.5 * lam * sum(W**2)`` over every weight matrix (biases and norm parameters are not penalised).

    Its ``value(be, w, scratch)`` and ``grad(be, w, out)`` take the model's Backend and one weight matrix
    (``scratch``/``out``: an array shaped like ``w`` to compute in, so that a step allocates nothing);
    ``step(be, ops, w, g, scratch)`` adds the gradient into ``g`` and returns the value, as a training step does.

    Parameters
    ----------
    lam : float
        The penalty's strength, non-negative.
    """

    def __init__(self, lam: float):
        if not lam >= 0:
            raise ValueError(f"penalty strength must be non-negative, got {lam!r}")
        self.lam = float(lam)

    def value(self, be, w, scratch=None):
        return 0.5 * self.lam * be.xp.sum(be.compute("multiply", w, w, out=scratch))

    def grad(self, be, w, out=None):
        return be.compute("multiply", w, self.lam, out=out)

    def step(self, be, ops, w, g, scratch=None):
        """A training step's work on one weight matrix: its gradient added into ``g``, its value returned (one
        pass over ``w`` and ``g`` where the kernels fuse it: ``ops.l2_penalty``)."""
        return 0.5 * self.lam * be.xp.sum(ops.l2_penalty(be.xp, w, g, self.lam, scratch))


class L1(L2):
    """``lam * sum(|W|)`` over every weight matrix.

    Parameters
    ----------
    lam : float
        The penalty's strength, non-negative.
    """

    def value(self, be, w, scratch=None):
        return self.lam * be.xp.sum(be.compute("abs", w, out=scratch))

    def grad(self, be, w, out=None):
        return be.compute("multiply", be.compute("sign", w, out=out), self.lam, out=out)

    def step(self, be, ops, w, g, scratch=None):
        g += self.grad(be, w, out=scratch)
        return self.value(be, w, scratch=scratch)
