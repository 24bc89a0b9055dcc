"""Gradient checking: analytic gradients against float64 central differences.

Works on any layer, loss or whole model, on the model's own backend, in float64. Tolerances follow
torch.autograd.gradcheck (eps 1e-6, atol 1e-5, rtol 1e-3).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import to_numpy
from .layers import Sequential
from .losses import Loss, get_loss
from .layers.base import Layer
from .types import ArrayLike


@dataclass
class GradCheckResult:
    """Per-name relative error ``|a - n| / max(|a| + |n|, 1e-12)`` (max over entries) and the verdict."""

    errors: dict = field(default_factory=dict)
    ok: bool = True

    @property
    def max_rel_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def __str__(self):
        rows = [f"{name:<24} {err:.3e}" for name, err in self.errors.items()]
        return "\n".join(rows + [f"{'passed' if self.ok else 'FAILED'}: max relative error {self.max_rel_error:.3e}"])


def _compare(result, name, analytic, numeric, atol, rtol):
    a, n = np.asarray(analytic, float).ravel(), np.asarray(numeric, float).ravel()
    result.errors[name] = float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-12), initial=0.0))
    result.ok &= bool(np.allclose(a, n, atol=atol, rtol=rtol))


def _pick(rng, size, max_entries):
    """All indices, or ``max_entries`` random ones of a larger array."""
    return np.arange(size) if max_entries is None or size <= max_entries else rng.choice(size, max_entries, False)


def check_model_gradients(model: Sequential, X: ArrayLike, y: ArrayLike, loss: str | Loss = "cross_entropy", *,
                          eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, max_entries: int | None = 200,
                          check_input: bool = True, seed: int = 0) -> GradCheckResult:
    """Check every parameter's gradient (and the input's) against float64 central differences.

    The model must be float64 (``model.to(dtype="float64")``); it is used in training mode, with Dropout's
    masks fixed by resetting its seed before each evaluation.

    Parameters
    ----------
    model : Sequential
        A float64 model.
    X : array_like
        A small batch of inputs.
    y : array_like
        Its targets.
    loss : str or Loss, default "cross_entropy"
        The loss whose gradient is checked through the model.
    eps : float, default 1e-6
        The central difference's step.
    atol : float, default 1e-5
        Absolute tolerance (``torch.autograd.gradcheck``'s).
    rtol : float, default 1e-3
        Relative tolerance (``torch.autograd.gradcheck``'s).
    max_entries : int or None, default 200
        Check at most this many random entries of each parameter (None: all).
    check_input : bool, default True
        Also check the gradient with respect to ``X``.
    seed : int, default 0
        Seeds the choice of entries.

    Returns
    -------
    GradCheckResult
        ``errors`` (the largest relative error ``|a - n| / max(|a| + |n|, 1e-12)`` per name), ``ok`` and
        ``max_rel_error``; printing it gives a table and the verdict.
    """
    if model.be.dtype != "float64":
        raise ValueError("gradient checks need a float64 model: call model.to(dtype='float64') first")
    loss = get_loss(loss)
    be, xp = model.be, model.be.xp
    X = be.asarray(to_numpy(X))
    y = to_numpy(y)
    y = be.asarray_int(y) if loss.task == "multiclass" and np.ndim(y) == 1 else be.asarray(y)
    rng = np.random.default_rng(seed)
    rng_state = be.state()

    def objective(x=X):
        be.set_state(rng_state)  # the same dropout mask on every evaluation
        return float(loss.value_and_grad(xp, model.ops, model.forward(x, training=True), y)[0])

    be.set_state(rng_state)
    value, grad = loss.value_and_grad(xp, model.ops, model.forward(X, training=True), y)
    dx = to_numpy(model.backward_to_input(grad))
    analytic = to_numpy(model.flat_grads).copy()
    result = GradCheckResult()
    flat = model.flat_params
    for name, (offset, shape) in model._slices.items():
        size = int(np.prod(shape))
        picks = _pick(rng, size, max_entries)
        numeric = np.empty(len(picks))
        for k, i in enumerate(picks):
            j = offset + int(i)
            orig = float(flat[j])
            flat[j] = orig + eps
            plus = objective()
            flat[j] = orig - eps
            minus = objective()
            flat[j] = orig
            numeric[k] = (plus - minus) / (2 * eps)
        _compare(result, name, analytic[offset + picks], numeric, atol, rtol)
    if check_input:
        host = to_numpy(X).copy()
        picks = _pick(rng, host.size, max_entries)
        numeric = np.empty(len(picks))
        for k, i in enumerate(picks):
            idx = np.unravel_index(i, host.shape)
            bumped = host.copy()
            bumped[idx] += eps
            plus = objective(be.asarray(bumped))
            bumped[idx] -= 2 * eps
            minus = objective(be.asarray(bumped))
            numeric[k] = (plus - minus) / (2 * eps)
        _compare(result, "input", dx.ravel()[picks], numeric, atol, rtol)
    return result


def check_layer_gradients(layer: Layer, x: ArrayLike, *, backend: str = "numpy", device: str | int | None = None,
                          seed: int = 0, **kwargs: Any) -> GradCheckResult:
    """Check one layer through the objective ``sum(layer(x) * r)`` with a fixed random ``r``.

    Parameters
    ----------
    layer : Layer
        A fresh layer (it is placed in a float64 model of its own).
    x : array_like
        Inputs, (N, features).
    backend : str, default "numpy"
        The backend to check on.
    device : str or int, optional
        Its device.
    seed : int, default 0
        Seeds the layer's initialisation, ``r`` and the entries checked.
    **kwargs
        ``eps``, ``atol``, ``rtol``, ``max_entries``, ``check_input``: as :func:`check_model_gradients`'s.

    Returns
    -------
    GradCheckResult
        ``errors`` (the largest relative error ``|a - n| / max(|a| + |n|, 1e-12)`` per name), ``ok`` and
        ``max_rel_error``; printing it gives a table and the verdict.
    """
    from .losses import Loss

    class _Projection(Loss):
        def value_and_grad(self, xp, ops, output, target):
            return xp.sum(output * target), target

    model = Sequential([layer], backend=backend, device=device, dtype="float64", seed=seed)
    x = np.asarray(x, dtype=np.float64)
    out = to_numpy(model.forward(model.be.asarray(x), training=True))
    r = np.random.default_rng(seed + 1).normal(size=out.shape)
    return check_model_gradients(model, x, r, _Projection(), seed=seed, **kwargs)


def check_loss_gradients(loss: str | Loss, logits: ArrayLike, targets: ArrayLike, *, eps: float = 1e-6,
                         atol: float = 1e-5, rtol: float = 1e-3, backend: str = "numpy") -> GradCheckResult:
    """Check a loss's gradient with respect to its input (float64).

    Parameters
    ----------
    loss : str or Loss
        The loss, by name or instance.
    logits : array_like
        The model outputs the loss is evaluated at, (N, C).
    targets : array_like
        Labels (N,) or targets (N, C).
    eps : float, default 1e-6
        The central difference's step.
    atol : float, default 1e-5
        Absolute tolerance (``torch.autograd.gradcheck``'s).
    rtol : float, default 1e-3
        Relative tolerance (``torch.autograd.gradcheck``'s).
    backend : str, default "numpy"
        The backend to check on.

    Returns
    -------
    GradCheckResult
        ``errors`` (the largest relative error ``|a - n| / max(|a| + |n|, 1e-12)`` per name), ``ok`` and
        ``max_rel_error``; printing it gives a table and the verdict.
    """
    from .backend import get_backend
    from .kernels import kernel_set

    loss = get_loss(loss)
    be = get_backend(backend, dtype="float64")
    xp, ops = be.xp, kernel_set(be.name)
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets)
    td = be.asarray_int(t) if t.dtype.kind in "iu" else be.asarray(t)
    _, grad = loss.value_and_grad(xp, ops, be.asarray(z), td)
    numeric = np.empty(z.size)
    for i in range(z.size):
        bumped = z.copy().ravel()
        bumped[i] += eps
        plus = float(loss.value_and_grad(xp, ops, be.asarray(bumped.reshape(z.shape)), td)[0])
        bumped[i] -= 2 * eps
        minus = float(loss.value_and_grad(xp, ops, be.asarray(bumped.reshape(z.shape)), td)[0])
        numeric[i] = (plus - minus) / (2 * eps)
    result = GradCheckResult()
    _compare(result, type(loss).__name__, to_numpy(grad), numeric, atol, rtol)
    return result
