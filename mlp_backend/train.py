"""Training loop, prediction and evaluation, with input validation at this boundary.

Data is checked once, moved to the model's backend and device once, and batches are taken there.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import validation
from .backend import to_numpy
from .losses import L2, get_loss
from .optim import Adam, get_optimizer


@dataclass
class History:
    """What ``fit`` measured: loss per iteration; losses, accuracies, learning rate and time per epoch."""

    loss: list = field(default_factory=list)            # per iteration (mini-batch)
    train_loss: list = field(default_factory=list)      # per epoch, mean over its batches
    train_accuracy: list = field(default_factory=list)  # per epoch, on the training batches (classification)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def as_dict(self) -> dict:
        return dict(vars(self))


class Callback:
    """Hooks called by ``fit``; set ``fit_state.stop = True`` to end training after this epoch."""

    def on_train_begin(self, state):
        pass

    def on_epoch_end(self, state, logs: dict):
        pass


class _Monitor(Callback):
    def __init__(self, monitor: str, min_delta: float, patience: int):
        if monitor not in ("val_loss", "val_accuracy", "train_loss", "train_accuracy"):
            raise ValueError(f"monitor must be val_loss, val_accuracy, train_loss or train_accuracy, got {monitor!r}")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be a non-negative integer, got {patience!r}")
        self.monitor, self.min_delta, self.patience = monitor, float(min_delta), patience
        self.sign = -1.0 if monitor.endswith("accuracy") else 1.0  # smaller is better after the sign

    def on_train_begin(self, state):
        self.best, self.wait = math.inf, 0

    def improved(self, logs) -> bool | None:
        value = logs.get(self.monitor)
        if value is None:
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, which this fit does not report "
                             "(pass validation_data for val_* metrics)")
        if self.sign * value < self.best - self.min_delta:
            self.best, self.wait = self.sign * value, 0
            return True
        self.wait += 1
        return False


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; optionally restore the best weights."""

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, restore_best=True):
        super().__init__(monitor, min_delta, patience)
        self.restore_best = restore_best

    def on_epoch_end(self, state, logs):
        if self.improved(logs):
            if self.restore_best:
                state.keep_best()
        elif self.wait >= self.patience:
            state.stop = True
            state.history.stopped_early = True


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=3, min_delta=0.0, min_lr=0.0):
        super().__init__(monitor, min_delta, patience)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        self.factor, self.min_lr = float(factor), float(min_lr)

    def on_epoch_end(self, state, logs):
        if not self.improved(logs) and self.wait >= self.patience:
            opt = state.optimizer
            opt.lr_scale = max(opt.lr_scale * self.factor, self.min_lr / opt.lr if opt.lr else 0.0)
            self.wait = 0


class _FitState:
    """What callbacks may look at and change during ``fit``."""

    def __init__(self, model, optimizer, history):
        self.model, self.optimizer, self.history = model, optimizer, history
        self.stop = False
        self.best_params = None
        self.epoch = 0

    def keep_best(self):
        xp = self.model.be.xp
        self.best_params = xp.asarray(self.model.flat_params, copy=True)
        self.history.best_epoch = self.epoch


def fit(model, X, y, *, loss=None, optimizer=None, epochs: int = 10, batch_size: int = 64, shuffle: bool = True,
        seed: int | None = None, validation_data=None, callbacks=(), penalty=None, restore_best: bool = False,
        verbose: int = 0, on_epoch=None, on_step=None) -> History:
    """Train ``model`` on ``(X, y)`` with mini-batches and return a :class:`History`.

    ``loss``: name or Loss (default: the model's last loss, else cross-entropy); ``optimizer``: name or
    Optimizer (default: the model's last optimizer, else Adam(1e-3)); ``seed`` reseeds shuffling and
    dropout; ``penalty``: an ``L1``/``L2`` on weight matrices, or a float for L2; ``restore_best`` keeps the
    parameters of the best validation loss (train loss without validation data) and restores them at the
    end; ``on_epoch(epoch, logs)`` is called after each epoch and ``on_step(step, steps_per_epoch, loss)``
    after each mini-batch (for progress output).
    """
    loss = get_loss(loss if loss is not None else (model.loss or "cross_entropy"))
    if optimizer is None:
        optimizer = model.optimizer if model.optimizer is not None else Adam(1e-3)
    optimizer = get_optimizer(optimizer)
    validation.check_positive_int("epochs", epochs)
    validation.check_positive_int("batch_size", batch_size)
    if isinstance(penalty, (int, float)) and not isinstance(penalty, bool):
        penalty = L2(penalty)
    be, xp, ops = model.be, model.be.xp, model.ops
    Xd, _ = validation.check_X(model, X)
    yd = validation.check_y(model, loss, y, Xd.shape[0])
    val = None
    if validation_data is not None:
        Xv, yv = validation_data
        Xvd, _ = validation.check_X(model, Xv, name="validation X")
        val = (Xvd, validation.check_y(model, loss, yv, Xvd.shape[0], name="validation y"))
    if seed is not None:
        be.reseed(seed)
    if not optimizer.is_initialised_for(model.flat_params) or optimizer.be is not be:
        optimizer.init(be, model.flat_params)
    model.loss, model.optimizer = loss, optimizer
    weights = [layer.params["W"] for layer in model.layers if "W" in layer.params]
    w_grads = [layer.grads["W"] for layer in model.layers if "W" in layer.grads]

    history = History()
    state = _FitState(model, optimizer, history)
    callbacks = list(callbacks)
    for cb in callbacks:
        cb.on_train_begin(state)
    best_monitor = math.inf
    n = Xd.shape[0]
    steps = -(-n // batch_size)
    classify = loss.task == "multiclass"
    for epoch in range(epochs):
        state.epoch = epoch
        start = time.perf_counter()
        order = be.permutation(n) if shuffle else np.arange(n)
        order_dev = be.asarray_int(order)
        lr_used = optimizer.current_lr()
        batch_losses, batch_correct = [], []
        for lo in range(0, n, batch_size):
            idx = order_dev[lo:min(lo + batch_size, n)]  # in-bounds slices only (Array API)
            xb, yb = xp.take(Xd, idx, axis=0), xp.take(yd, idx, axis=0)
            out = model.forward(xb, training=True)
            value, grad = loss.value_and_grad(xp, ops, out, yb)
            if classify:
                batch_correct.append(xp.sum(xp.astype(xp.argmax(out, axis=1) == yb, xp.int64)))
            model.backward(grad)
            if penalty is not None:
                for w, g in zip(weights, w_grads):
                    g += penalty.grad(xp, w)
                value = value + sum(penalty.value(xp, w) for w in weights)
            value = float(value)
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss became {value} at epoch {epoch + 1}, step {len(batch_losses) + 1}; "
                    "lower the learning rate or enable clipping (clip_norm=...)")
            optimizer.step(model.flat_params, model.flat_grads, ops)
            batch_losses.append((value, int(yb.shape[0])))
            if on_step is not None:
                on_step(len(batch_losses), steps, value)
        seconds = time.perf_counter() - start
        history.loss.extend(v for v, _ in batch_losses)
        train_loss = sum(v * k for v, k in batch_losses) / n
        logs = {"epoch": epoch + 1, "train_loss": train_loss, "lr": lr_used, "seconds": seconds}
        history.train_loss.append(train_loss)
        history.lr.append(lr_used)
        history.epoch_seconds.append(seconds)
        if classify:
            logs["train_accuracy"] = float(sum(int(c) for c in batch_correct)) / n
            history.train_accuracy.append(logs["train_accuracy"])
        if val is not None:
            scores = evaluate(model, *val)
            logs["val_loss"] = scores["loss"]
            history.val_loss.append(scores["loss"])
            if "accuracy" in scores:
                logs["val_accuracy"] = scores["accuracy"]
                history.val_accuracy.append(scores["accuracy"])
        monitored = logs.get("val_loss", train_loss)
        if restore_best and monitored < best_monitor:
            best_monitor = monitored
            state.keep_best()
        for cb in callbacks:
            cb.on_epoch_end(state, logs)
        if on_epoch is not None:
            on_epoch(epoch, logs)
        if state.stop:
            break
    if state.best_params is not None:
        model.flat_params[...] = state.best_params
    model.history = history
    return history


def _forward_batches(model, Xd, batch_size):
    xp = model.be.xp
    n = Xd.shape[0]
    outs = [model.forward(Xd[lo:min(lo + batch_size, n), ...], training=False) for lo in range(0, n, batch_size)]
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


def _result(model, value, host_input: bool):
    return np.asarray(to_numpy(value)) if host_input and model.be.name != "numpy" else value


def predict_proba(model, X, batch_size: int = 1024):
    """Class probabilities (softmax or sigmoid, as the model's loss implies), in X's library."""
    validation.check_positive_int("batch_size", batch_size)
    Xd, host = validation.check_X(model, X)
    loss = model.loss or get_loss("cross_entropy")
    return _result(model, loss.probabilities(model.be.xp, _forward_batches(model, Xd, batch_size)), host)


def predict(model, X, batch_size: int = 1024):
    """Class labels (multiclass, binary) or outputs (regression, one column squeezed), in X's library."""
    validation.check_positive_int("batch_size", batch_size)
    xp = model.be.xp
    Xd, host = validation.check_X(model, X)
    out = _forward_batches(model, Xd, batch_size)
    task = model.loss.task if model.loss is not None else "multiclass"
    if task == "multiclass":
        out = xp.argmax(out, axis=1)
    elif task == "binary":
        out = xp.astype(out > 0, xp.int64)
    if out.ndim == 2 and out.shape[1] == 1:
        out = xp.reshape(out, (out.shape[0],))
    return _result(model, out, host)


def evaluate(model, X, y, batch_size: int = 1024) -> dict:
    """Mean loss (without penalties) and accuracy (classification) or MSE/MAE/R² (regression)."""
    validation.check_positive_int("batch_size", batch_size)
    xp = model.be.xp
    loss = model.loss or get_loss("cross_entropy")
    Xd, _ = validation.check_X(model, X)
    yd = validation.check_y(model, loss, y, Xd.shape[0])
    out = _forward_batches(model, Xd, batch_size)
    scores = {"loss": float(loss.value_and_grad(xp, model.ops, out, yd)[0])}
    if loss.task == "multiclass":
        scores["accuracy"] = float(xp.mean(xp.astype(xp.argmax(out, axis=1) == yd, out.dtype)))
    elif loss.task == "binary":
        pred = xp.astype(out > 0, out.dtype)
        scores["accuracy"] = float(xp.mean(xp.astype(pred == xp.reshape(yd, pred.shape), out.dtype)))
    else:
        from .metrics import regression_scores

        scores.update(regression_scores(to_numpy(yd), to_numpy(out)))
    return scores
