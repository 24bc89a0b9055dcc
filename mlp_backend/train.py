"""Training loop, prediction and evaluation, with input validation at this boundary.

Data is checked once, moved to the model's backend and device once, and batches are taken there.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from . import validation
from .backend import to_numpy
from .losses import L2, get_loss
from .optim import Adam, get_optimizer
from .distributed import SingleProcess
from .step import StepCalls, StepGraph, StepProgram
from .types import ArrayLike, PathLike

if TYPE_CHECKING:
    from .layers import Sequential
    from .losses import Loss
    from .optim import Optimizer


class Callback:
    """Hooks called by ``fit``; set ``state.stop = True`` to end training after this epoch.

    ``on_batch_end`` sees each mini-batch's loss as the step program's results are read back (at every epoch's
    end, at checkpoints, and about once a second when a callback is ``live``): no read of its own, so the
    calls for several steps may come together. ``root_only`` callbacks run on rank 0 alone in a distributed
    fit (writers: progress, loggers); the others run on every rank. ``get_state``/``set_state`` carry a
    callback's counters through checkpoints (JSON values).
    """

    live = False       # wants the step results read about once a second (progress bars)
    root_only = False  # runs on rank 0 only when training is distributed

    def on_train_begin(self, state: FitState):
        """Called once before the first epoch (after a resume has restored the position).

        Parameters
        ----------
        state : object
            The fit's state: ``state.model``, ``state.optimizer``, ``state.history`` (the :class:`History`),
            ``state.epoch`` (0-based) and ``state.stop`` (set it to True to end training after this epoch).
        """
        pass

    def on_epoch_begin(self, state: FitState):
        """Called at the start of every epoch.

        Parameters
        ----------
        state : object
            The fit's state: ``state.model``, ``state.optimizer``, ``state.history`` (the :class:`History`),
            ``state.epoch`` (0-based) and ``state.stop`` (set it to True to end training after this epoch).
        """
        pass

    def on_batch_end(self, state: FitState, step: int, logs: dict):
        """Called with each mini-batch's loss, as the results are read back.

        Parameters
        ----------
        state : object
            The fit's state: ``state.model``, ``state.optimizer``, ``state.history`` (the :class:`History`),
            ``state.epoch`` (0-based) and ``state.stop`` (set it to True to end training after this epoch).
        step : int
            The step, 1-based within the epoch.
        logs : dict
            ``loss`` (the batch's mean loss), ``steps`` (per epoch), ``epoch`` (1-based) and ``global_step``
            (over the whole fit, 1-based).
        """

    def reads_at(self, global_step: int, last_of_epoch: bool) -> bool:
        """Whether this callback needs the step results read at ``global_step`` (a checkpoint does).

        Parameters
        ----------
        global_step : int
            The step about to run, 1-based over the whole fit.
        last_of_epoch : bool
            Whether it is the last step of its epoch.

        Returns
        -------
        bool
            True to have the results read after that step.
        """
        return False

    def on_epoch_end(self, state: FitState, logs: dict):
        """Called after every epoch, once its losses and validation scores are known.

        Parameters
        ----------
        state : object
            The fit's state: ``state.model``, ``state.optimizer``, ``state.history`` (the :class:`History`),
            ``state.epoch`` (0-based) and ``state.stop`` (set it to True to end training after this epoch).
        logs : dict
            The epoch's ``train_loss``, ``train_accuracy`` (classification), ``val_loss`` and ``val_accuracy``
            (with validation data), ``lr`` and ``seconds``.
        """
        pass

    def on_train_end(self, state: FitState):
        """Called once when training ends, normally or by ``state.stop``.

        Parameters
        ----------
        state : object
            The fit's state: ``state.model``, ``state.optimizer``, ``state.history`` (the :class:`History`),
            ``state.epoch`` (0-based) and ``state.stop`` (set it to True to end training after this epoch).
        """
        pass

    def get_state(self) -> dict:
        """The callback's counters to keep in a checkpoint.

        Returns
        -------
        dict
            JSON values, given back to :meth:`set_state` on resume.
        """
        return {}

    def set_state(self, values: dict):
        """Restore the counters :meth:`get_state` returned, on resume.

        Parameters
        ----------
        values : dict
            What :meth:`get_state` returned when the checkpoint was written.
        """
        pass


@dataclass
class History(Callback):
    """What ``fit`` measured; ``fit`` returns it, keeps it in its checkpoints, and runs it as its first callback.

    Parameters
    ----------
    loss : list of float
        The loss of every mini-batch, in order.
    train_loss : list of float
        Per epoch: the mean of its mini-batch losses.
    train_accuracy : list of float
        Per epoch: accuracy on the training batches as they were trained (classification).
    val_loss : list of float
        Per epoch: the loss on ``validation_data``, if given.
    val_accuracy : list of float
        Per epoch: the accuracy on ``validation_data`` (classification).
    lr : list of float
        Per epoch: the learning rate at its end.
    epoch_seconds : list of float
        Per epoch: wall-clock seconds.
    best_epoch : int or None
        The epoch (0-based) whose parameters ``restore_best`` / :class:`EarlyStopping` kept.
    stopped_early : bool
        Whether a callback ended training before ``epochs``.
    diverged : str or None
        Why training looks divergent (a :class:`DivergenceWarning` was given), else None.
    threads : list of int
        Per epoch: the thread count of the matrix products, where ``fit``'s ``threads`` set it.
    """

    loss: list = field(default_factory=list)            # per iteration (mini-batch)
    train_loss: list = field(default_factory=list)      # per epoch, mean over its batches
    train_accuracy: list = field(default_factory=list)  # per epoch, on the training batches (classification)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    diverged: str | None = None  # why training looks divergent (a DivergenceWarning was given), else None
    threads: list = field(default_factory=list)  # per epoch, where fit's threads set the count

    def as_dict(self) -> dict:
        return dict(vars(self))

    def on_epoch_end(self, state, logs):
        self.loss.extend(v for v, _ in state.position.batch_losses)
        self.train_loss.append(logs["train_loss"])
        self.lr.append(logs["lr"])
        self.epoch_seconds.append(logs["seconds"])
        for key in ("train_accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                getattr(self, key).append(logs[key])

    def __repr__(self):
        last = {k: getattr(self, k)[-1] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
                if getattr(self, k)}
        shown = ", ".join(f"{k}={v:.4f}" for k, v in last.items())
        return f"History({len(self.train_loss)} epochs, {len(self.loss)} steps{', ' if shown else ''}{shown})"


class DivergenceWarning(RuntimeWarning):
    """Training runs on with finite numbers that have stopped making sense."""


class LambdaCallback(Callback):
    """Functions as a callback, on rank 0 only (what ``fit``'s ``on_step``/``on_epoch`` make).

    Parameters
    ----------
    on_step : callable, optional
        ``on_step(step, steps, loss)`` per mini-batch (step 1-based within the epoch); makes the callback
        ``live`` (results read about once a second).
    on_epoch : callable, optional
        ``on_epoch(epoch, logs)`` per epoch, ``epoch`` 0-based, ``logs`` as :meth:`Callback.on_epoch_end`'s.
    """

    root_only = True

    def __init__(self, on_step: Callable | None = None, on_epoch: Callable | None = None):
        self.on_step, self.on_epoch, self.live = on_step, on_epoch, on_step is not None

    def on_batch_end(self, state, step, logs):
        if self.on_step is not None:
            self.on_step(step, logs["steps"], logs["loss"])

    def on_epoch_end(self, state, logs):
        if self.on_epoch is not None:
            self.on_epoch(state.epoch, logs)


class ProgressBar(LambdaCallback):
    """A tqdm bar per epoch and a line per epoch, as Keras's ``verbose=1`` (``bar=False``: ``verbose=2``).

    Parameters
    ----------
    epochs : int
        The number of epochs of the fit, for the ``epoch k/n`` labels.
    bar : bool, default True
        Show the per-batch bar; False prints only the line per epoch.
    """

    def __init__(self, epochs: int, bar: bool = True):
        from .progress import Progress

        progress = Progress(epochs, bar=bar, always=True)
        super().__init__(progress.step, progress.end_epoch)


class _Threads(Callback):
    """``fit``'s ``threads``: each epoch's thread count for the matrix products and parallel kernels, fixed or,
    with ``"auto"``, from the CPU time other processes took during the last epoch
    (:class:`~mlp_backend.threads.LoadGovernor`); recorded in ``History.threads``. The counts in use before
    ``fit`` come back at its end."""

    def __init__(self, threads: int | str):
        from .threads import LoadGovernor

        if threads != "auto" and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive integer or 'auto', got {threads!r}")
        self.governor = LoadGovernor() if threads == "auto" else None
        self.fixed, self.count, self._restore = threads, None, None

    def on_epoch_begin(self, state: FitState):
        from .threads import limit

        count = self.fixed if self.governor is None else self.governor.count()
        if count != self.count:
            restore = limit(count)
            self._restore, self.count = self._restore or restore, count
        state.history.threads[state.epoch:] = [count]  # a resumed epoch replaces what its checkpoint recorded

    def restore(self):  # by fit, however training ends
        if self._restore is not None:
            self._restore()
            self._restore, self.count = None, None


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

    def get_state(self):
        return {"best": self.best if math.isfinite(self.best) else None, "wait": self.wait}

    def set_state(self, values):
        self.best = values["best"] if values["best"] is not None else math.inf
        self.wait = values["wait"]

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
    """Stop when ``monitor`` has not improved for ``patience`` epochs; optionally restore the best weights.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The per-epoch value to watch: ``"val_loss"``, ``"train_loss"``, ``"val_accuracy"`` or
        ``"train_accuracy"`` (losses must fall, accuracies rise).
    patience : int, default 5
        Epochs without improvement before training stops.
    min_delta : float, default 0.0
        The smallest change that counts as an improvement.
    restore_best : bool, default True
        End with the parameters of the best epoch.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0, restore_best: bool = True):
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
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The per-epoch value to watch, as :class:`EarlyStopping`'s.
    factor : float, default 0.1
        What the learning rate is multiplied by, in (0, 1).
    patience : int, default 3
        Epochs without improvement before each reduction.
    min_delta : float, default 0.0
        The smallest change that counts as an improvement.
    min_lr : float, default 0.0
        The learning rate is never reduced below this.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 3, min_delta: float = 0.0,
                 min_lr: float = 0.0):
        super().__init__(monitor, min_delta, patience)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        self.factor, self.min_lr = float(factor), float(min_lr)

    def on_epoch_end(self, state, logs):
        if not self.improved(logs) and self.wait >= self.patience:
            opt = state.optimizer
            opt.lr_scale = max(opt.lr_scale * self.factor, self.min_lr / opt.lr if opt.lr else 0.0)
            self.wait = 0


class FitState:
    """What callbacks may look at and change during ``fit``; ``fit`` makes it, callbacks receive it.

    Besides its parameters it holds ``stop`` (set True to end training after this epoch), ``epoch``
    (0-based), ``best_params`` / ``best_monitor`` (what :class:`EarlyStopping` and ``restore_best`` keep) and
    ``is_root`` (rank 0 of a distributed fit, or the one process).

    Parameters
    ----------
    model : Sequential
        The model being trained.
    optimizer : Optimizer
        Its optimizer (``optimizer.lr_scale`` is what :class:`ReduceLROnPlateau` changes).
    history : History
        What has been measured so far.
    comm : object
        The communicator: ``SingleProcess`` in one process, an MPI communicator in a distributed fit.
    """

    def __init__(self, model: Sequential, optimizer: Optimizer, history: History, comm: object):
        self.model, self.optimizer, self.history, self.comm = model, optimizer, history, comm
        self.stop = False
        self.best_params = None
        self.best_monitor = math.inf
        self.epoch = 0
        self.position = None  # where training is (_Position): what a checkpoint holds
        self.warned = False  # a DivergenceWarning has been given

    @property
    def is_root(self) -> bool:
        """Rank 0 of a distributed fit, or the one process."""
        return self.comm.is_root

    def keep_best(self):
        xp = self.model.be.xp
        self.best_params = xp.asarray(self.model.flat_params, copy=True)
        self.history.best_epoch = self.epoch


@dataclass
class _Position:
    """Where training is: what a checkpoint must hold to continue bit-identically."""

    epoch: int = 0
    step: int = 0                 # mini-batches done in this epoch
    order: np.ndarray | None = None  # this epoch's sample order
    batch_losses: list = field(default_factory=list)
    correct: int = 0
    seconds: float = 0.0          # this epoch's training time before ``started``
    lr: float | None = None       # the learning rate this epoch reports (its first step's)
    started: float = field(default_factory=time.perf_counter, compare=False)

    def elapsed(self) -> float:
        return self.seconds + time.perf_counter() - self.started


@dataclass
class _Batches:
    """How an epoch is cut: ``n`` samples, ``size`` per mini-batch, ``steps`` mini-batches."""

    n: int
    size: int
    shuffle: bool

    @property
    def steps(self) -> int:
        return -(-self.n // self.size)


class _RestoreBest(Callback):
    """``fit(restore_best=True)``: keeps the parameters of the best validation loss (train loss without
    validation data); ``fit`` restores them at the end."""

    def on_epoch_end(self, state, logs):
        monitored = logs.get("val_loss", logs["train_loss"])
        if monitored < state.best_monitor:
            state.best_monitor = monitored
            state.keep_best()


class _Checkpointer(Callback):
    """``fit(checkpoint=, checkpoint_every=)``: everything needed to continue, written atomically after every
    epoch and every ``every`` steps. Every rank reads the step results at those steps (a collective when
    distributed); rank 0 writes, where a ``path`` is given. Runs after the other callbacks, so their counters
    are saved current.

    A checkpoint waits beside the file (``.pending``) until the loss of the step after it, computed at its
    weights, has been read finite; then it replaces the file (kept as ``.prev``). A run that stops at a
    non-finite loss so keeps a checkpoint whose weights gave a finite loss, not the one just before the NaN."""

    def __init__(self, path, every, signature, callbacks, extra=None):
        self.path, self.every, self.signature, self.callbacks = path, every, signature, callbacks
        self.extra = extra or {}  # what else a reader of the file needs (a run's input scaling, its dataset)
        self.pending_at = None  # the global step a pending checkpoint was taken after
        self.global_step = 0

    def reads_at(self, global_step: int, last_of_epoch: bool) -> bool:
        return bool(self.every) and not last_of_epoch and global_step % self.every == 0

    def _save(self, state, pos, global_step):
        if self.path is not None and state.is_root:
            _save_training(self.path, state, self.callbacks, self.signature, pos, self.extra, pending=True)
            self.pending_at = global_step

    def _promote(self):
        from .checkpoint import promote

        if self.pending_at is not None:
            promote(self.path)
            self.pending_at = None

    def on_batch_end(self, state, step, logs):
        self.global_step = logs["global_step"]  # the last step read: at an epoch's end, its last
        if self.pending_at is not None and logs["global_step"] > self.pending_at:
            self._promote()  # this step's loss, at the pending checkpoint's weights, was finite
        if self.reads_at(logs["global_step"], step == logs["steps"]):
            self._save(state, state.position, logs["global_step"])

    def on_epoch_end(self, state, logs):
        self._save(state, _Position(epoch=state.epoch + 1), self.global_step)

    def on_train_end(self, state):
        self._promote()  # the run ended normally: its last state is the one to continue from


def fit(model: Sequential, X: ArrayLike, y: ArrayLike, *, loss: str | Loss | None = None,
        optimizer: str | Optimizer | None = None, epochs: int = 10, batch_size: int = 64, shuffle: bool = True,
        seed: int | None = None, validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        callbacks: Sequence[Callback] = (), penalty: L2 | float | None = None, restore_best: bool = False,
        on_epoch: Callable | None = None, on_step: Callable | None = None, checkpoint: PathLike | None = None,
        checkpoint_every: int | None = None, resume: PathLike | None = None, check_finite: str | bool = "loss",
        distributed: str | object | None = None, verbose: int = 0, sample_weight: ArrayLike | None = None,
        checkpoint_extra: dict | None = None, allow_other_data: bool = False, threads: int | str | None = None,
        graph: bool | str = "auto") -> History:
    """Train ``model`` on ``(X, y)`` with mini-batches and return a :class:`History`.

    Parameters
    ----------
    model : Sequential
        The model to train, in place.
    X : array_like
        Inputs, (N, features), any array library (moved to the model's backend once).
    y : array_like
        Targets: integer class labels (N,), one-hot or soft labels (N, C), or regression targets.
    loss : str or Loss, optional
        ``"cross_entropy"``, ``"mse"``, ``"softmax_mse"``, ``"bce"`` or a Loss (default: the model's last,
        else cross-entropy).
    optimizer : str or Optimizer, optional
        A name (``"adam"``, ``"sgd"``, ...) or an Optimizer (default: the model's last, else ``Adam(1e-3)``).
    epochs : int, default 10
        Passes over the training set.
    batch_size : int, default 64
        Samples per mini-batch (the global batch when ``distributed``).
    shuffle : bool, default True
        Draw a new sample order every epoch.
    seed : int, optional
        Reseeds shuffling and dropout (default: continue the model's generator).
    validation_data : tuple of array_like, optional
        ``(X_val, y_val)`` scored after every epoch (``val_loss``, ``val_accuracy``).
    callbacks : sequence of Callback, default ()
        Hooks run every epoch and step (see :class:`Callback`).
    penalty : L1 or L2 or float, optional
        A penalty on the weight matrices; a float is an L2 strength.
    restore_best : bool, default False
        End with the parameters of the best validation loss (else training loss).
    on_epoch : callable, optional
        ``on_epoch(epoch, logs)`` after every epoch (0-based epoch).
    on_step : callable, optional
        ``on_step(step, steps_per_epoch, loss)`` per mini-batch, as results are read back.
    checkpoint : str or Path, optional
        A file written atomically after every epoch (and every ``checkpoint_every`` steps) with everything a
        resume needs.
    checkpoint_every : int, optional
        Also checkpoint every this many steps.
    resume : str or Path, optional
        A checkpoint of the same configuration: training continues exactly as if it had never stopped.
    check_finite : {"loss", "all", False}, default "loss"
        ``"loss"`` stops with a FloatingPointError at the first step whose loss is not finite, parameters and
        optimizer state as before it; ``"all"`` also checks every gradient; False checks nothing.
    distributed : str or mpi4py communicator, optional
        ``"mpi"`` trains data-parallel over an MPI launch's processes (``"nccl"``, ``"mpi-cuda"``,
        ``"mpi-staged"`` force how device arrays travel): every rank ends where one process would, and rank 0
        alone writes and runs ``root_only`` callbacks.
    verbose : int, default 0
        1: a progress bar and a line per epoch; 2: the lines only.
    sample_weight : array_like, optional
        One non-negative weight per sample; each batch's loss is the weighted mean of its samples'.
    checkpoint_extra : dict, optional
        JSON values stored in every checkpoint (a run's dataset and scaling, for example).
    allow_other_data : bool, default False
        Resume on data whose digest differs from the checkpoint's.
    threads : int or "auto", optional
        Threads for the matrix products and parallel kernels during this fit: a count, or ``"auto"`` to choose
        each epoch's from the CPUs other processes leave free (steady on a busy machine; the float32 products'
        last bits follow the count). Default: as they are (``MLP_THREADS``, else the libraries' own).
    graph : bool or "auto", default "auto"
        Replay each full batch's step as recorded once. On CuPy, one CUDA graph: ``"auto"`` where training runs
        in one process and batches hold at most 1024 samples (larger ones ran faster step by step on an H200); if
        recording fails, a warning and the steps run as usual. On NumPy, the list of the step's kernel calls bound
        to their arrays, without the Python between them (same bits; what is written with array functions, as an
        activation layer, a loss with sample weights or ``clip_norm``'s norm, is one Python call in the list):
        ``"auto"`` where training runs in one process and an epoch holds at least 3 full batches (a tape is made at
        every epoch's start); the step runs as usual where a call cannot be bound (a kernel that follows the thread
        count). ``True`` to require it (an error where it cannot), ``False`` to run each step's Python. The last,
        partial batch of an epoch runs as usual.

    Returns
    -------
    History
        Losses per mini-batch, per-epoch losses, accuracies, learning rates and times.

    Raises
    ------
    FloatingPointError
        When the loss (or, with ``check_finite="all"``, a gradient) stops being finite.
    ValueError
        On inconsistent arguments or a checkpoint of another configuration.

    Notes
    -----
    On x86-64 the epochs run with subnormal numbers flushed to zero on the calling thread (callbacks included), as
    XLA's CPU code always does: a result below the dtype's smallest normal number is zero
    (``mlp_backend.kernels.fpenv``). An x86 core computes with subnormal numbers many times slower, and late in
    training tiny gradients make them; the previous setting comes back when ``fit`` returns or fails.
    """
    loss, optimizer, penalty = _check_fit_args(model, loss, optimizer, penalty, epochs, batch_size, check_finite,
                                               checkpoint_every)
    Xd, yd, val = _device_data(model, loss, X, y, validation_data)
    weights = _device_weights(model, sample_weight, Xd.shape[0], distributed)
    if seed is not None:
        model.be.reseed(seed)
    batches, callbacks = _Batches(Xd.shape[0], batch_size, shuffle), list(callbacks)
    data = (Xd, yd, val, weights) if checkpoint is not None or resume is not None else None  # for its digest
    signature = _signature(model, loss, optimizer, penalty, batches, restore_best, callbacks, data)
    comm = _join(distributed, model, batches, {**signature, "data": None, "dtype": model.be.dtype})
    state = FitState(model, _bind(model, loss, optimizer), History(), comm)
    pos = _Position() if resume is None else _load_training(resume, state, callbacks, signature, allow_other_data)
    shortcuts = _function_callbacks(epochs, verbose, on_step, on_epoch)
    counts = _Threads(threads) if threads is not None else None
    shortcuts += [counts] if counts else []
    if checkpoint is not None or checkpoint_every:  # last: the others' counters are saved as they end the epoch
        shortcuts.append(_Checkpointer(checkpoint, checkpoint_every, signature, callbacks, checkpoint_extra))
    hooks = [cb for cb in [_RestoreBest()] * bool(restore_best) + callbacks + shortcuts
             if comm.is_root or not cb.root_only]
    program = StepProgram(model, loss, optimizer, steps=batches.steps, batch_size=batches.size, penalty=penalty,
                          check_finite=check_finite, comm=comm)
    replayed = _step_graph(graph, program, yd)
    reader = _Reader(program, state, batches, hooks)
    for cb in hooks:
        cb.on_train_begin(state)
    from .kernels.fpenv import subnormals_flushed  # imports Numba: not at import time

    try:
        with subnormals_flushed():  # as XLA: an x86 core computes with subnormal numbers many times slower
            for epoch in range(pos.epoch, epochs):
                state.epoch, state.position = epoch, pos
                _run_epoch(state, program, replayed, reader, batches, (Xd, yd, weights), hooks)
                _end_epoch(state, hooks, batches.n, val, loss.task == "multiclass")
                if state.stop:
                    break
                pos = _Position(epoch=epoch + 1)
    finally:  # the thread counts come back even when training fails (a NaN stop, Ctrl-C)
        if counts:
            counts.restore()
    if state.best_params is not None:
        model.flat_params[...] = state.best_params
    model.history = state.history
    for cb in hooks:
        cb.on_train_end(state)
    return state.history


# "auto" records the step up to this batch size. On an H200 (bench/RESULTS.md) the replayed step beat the launched
# one 3.6x at batch 64 and 3x at 256 but lost 2.7x at 4096: a replay's products (kernels/gemm.py) grow with the batch,
# a launched step's cost is its ~2 ms of launches (cuBLAS products); the two meet near 1,400.
GRAPH_AUTO_MAX_BATCH = 1024


def _step_graph(graph, program, y):
    """``fit``'s ``graph``: what replays full batches (a StepCalls on NumPy, a StepGraph on a device that records
    graphs), or None where they run as usual."""
    if graph not in ("auto", True, False):
        raise ValueError(f"graph must be 'auto', True or False, got {graph!r}")
    be = program.model.be
    if graph is False or (graph == "auto" and not be.replays_calls and program.batch_size > GRAPH_AUTO_MAX_BATCH):
        return None
    if be.replays_calls:  # the calls a step makes, at any batch size
        why = program.unrecordable()
        if why is None and graph == "auto" and y.shape[0] // program.batch_size < StepCalls.MIN_FULL_BATCHES:
            return None
        if why is None:
            return StepCalls(program)
    else:
        why = be.graph_support()
        if why is None and not isinstance(program.comm, SingleProcess):
            why = "a distributed step exchanges gradients between processes, which a device's graph cannot hold"
        if why is None:
            return StepGraph(program, fall_back=graph == "auto")
    if graph is True:
        raise ValueError(f"graph=True, but no training step can be recorded here: {why}")
    return None


def _run_epoch(state, program, replayed, reader, batches, data, hooks):
    """One epoch's mini-batches from ``state.position`` on (a resumed epoch continues where it stopped);
    ``replayed``: the StepGraph that runs full batches, or None."""
    pos, comm, be = state.position, state.comm, state.model.be
    pos.started = time.perf_counter()
    if pos.order is None:
        pos.order = be.permutation(batches.n) if batches.shuffle else np.arange(batches.n)
        pos.order = np.asarray(pos.order, dtype=np.int64)
        comm.broadcast(pos.order)  # rank 0's order for everyone (their generators differ, for dropout)
    if pos.lr is None:
        pos.lr = state.optimizer.current_lr()
    for cb in hooks:
        cb.on_epoch_begin(state)
    reader.begin(pos)
    program.begin_epoch(pos.order, pos.step)
    X, y, weights = data
    steps = batches.steps
    for step in range(pos.step, steps):  # the program's counter holds the step: every full batch is the same call
        size = min(batches.size, batches.n - step * batches.size)
        mine = comm.shard(0, size)
        runner = replayed if replayed is not None and size == batches.size else program
        runner.run(X, y, mine, (mine[1] - mine[0]) / size, weights)
        pos.step = step + 1
        global_step = state.epoch * steps + step + 1
        if step + 1 == steps or reader.due(step + 1) or any(cb.reads_at(global_step, step + 1 == steps)
                                                              for cb in hooks):
            reader.collect(pos, state.epoch, step + 1)


def _bind(model, loss, optimizer):
    """The optimizer's state on the model's backend, and the loss and optimizer kept by the model."""
    if not optimizer.is_initialised_for(model.flat_params) or optimizer.be is not model.be:
        optimizer.init(model.be, model.flat_params)
    model.loss, model.optimizer = loss, optimizer
    return optimizer


def _data_digest(*arrays) -> str:
    """A digest of the training data (and validation data and sample weights): what a resume must train on."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        for part in (a if isinstance(a, tuple) else (a,)):
            if part is not None:
                host = np.ascontiguousarray(to_numpy(part))
                h.update(f"{host.dtype}{host.shape}".encode() + host.tobytes())
    return h.hexdigest()


def _signature(model, loss, optimizer, penalty, batches, restore_best, callbacks, data=None) -> dict:
    """What a checkpoint's training must match to be resumed (``data``: the arrays whose digest it records)."""
    return {"data": None if data is None else _data_digest(*data), "batch_size": batches.size,
            "shuffle": batches.shuffle, "n_samples": batches.n, "n_features": model.in_features, "loss": [loss.name, loss.config()],
            "optimizer": [type(optimizer).__name__, optimizer.config()],
            "penalty": repr(vars(penalty)) if penalty is not None else None, "model": model.config(),
            "restore_best": restore_best, "callbacks": [type(cb).__name__ for cb in callbacks]}


def _warn_if_diverging(state, classify, patience=3):
    """One DivergenceWarning per fit when the loss grows 1000-fold, a classifier's loss is 1000 times a uniform
    guess's, or its accuracy sits at chance for a while with a loss ten times a guess's: a learning rate far too
    high can do any of these without ever making a number infinite."""
    h = state.history
    if state.warned or not h.train_loss:
        return
    why = None
    classes = max(state.model.out_features, 2)
    if h.train_loss[-1] > 1e3 * max(h.train_loss[0], 1e-12):
        why = f"train loss {h.train_loss[-1]:.3g} is over 1000 times the first epoch's {h.train_loss[0]:.3g}"
    elif classify and h.train_loss[-1] > 1e3 * math.log(classes):
        why = (f"train loss {h.train_loss[-1]:.3g} is over 1000 times a uniform guess's "
               f"{math.log(classes):.3g}: the logits have exploded")
    elif classify and len(h.train_accuracy) >= patience and h.train_loss[-1] > 10 * math.log(classes):
        # at chance with a loss worse than guessing: not a hard problem, a broken run (unlearnable data sits at
        # chance with a loss near the uniform guess's)
        if all(a <= 1.5 / classes for a in h.train_accuracy[-patience:]):
            why = (f"train accuracy has been at chance ({1 / classes:.2f}) for {patience} epochs with a loss over "
                   "ten times a uniform guess's")
    if why:
        state.warned = True
        h.diverged = f"epoch {len(h.train_loss)}: {why}"
        warnings.warn(f"training looks divergent: {why}; lower the learning rate or enable clipping (clip_norm=...)",
                      DivergenceWarning, stacklevel=4)


def _sharded_scores(model, val, comm) -> dict:
    """Validation loss and accuracy with each rank scoring a contiguous share, weighted by the shares' sizes."""
    if comm.size == 1:
        return evaluate(model, *val)
    X, y = val
    lo, hi = comm.shard(0, X.shape[0])
    keys = ("loss", "accuracy") if (model.loss or get_loss("cross_entropy")).task != "regression" else ("loss",)
    sums = np.zeros(len(keys) + 1)
    if hi > lo:
        scores = evaluate(model, X[lo:hi, ...], y[lo:hi, ...])
        sums[:-1] = [scores[k] * (hi - lo) for k in keys]
        sums[-1] = hi - lo
    comm.allreduce_sum(sums)
    return {k: float(v / sums[-1]) for k, v in zip(keys, sums[:-1])}


def _function_callbacks(epochs, verbose, on_step, on_epoch) -> list:
    """``fit``'s progress (``verbose``) and ``on_step``/``on_epoch`` functions, as callbacks."""
    if verbose not in (0, 1, 2, False, True):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    found = [ProgressBar(epochs, bar=verbose == 1)] if verbose else []
    if on_step is not None or on_epoch is not None:
        found.append(LambdaCallback(on_step, on_epoch))
    return found


def _join(distributed, model, batches, settings):
    """The communicator of a data-parallel fit, its replicas made identical (after agreeing on ``settings``);
    one process gets a no-op one."""
    if distributed is None or distributed is False:
        return SingleProcess()
    from .distributed import communicator

    comm = communicator(distributed, backend=model.be)
    comm.agree_on(settings)
    smallest = min(batches.size, batches.n % batches.size or batches.size)
    if smallest < comm.size:
        raise ValueError(f"batch_size {batches.size} over {batches.n} samples leaves a batch of {smallest}, fewer "
                         f"than the {comm.size} ranks: every rank needs at least one sample of every batch")
    comm.broadcast(model.flat_params)  # rank 0's initial parameters everywhere
    if comm.rank:  # different dropout masks on each rank (the shuffling order comes from rank 0)
        model.be.reseed((model.be.seed or 0) + 7919 * comm.rank)
    return comm


def _check_fit_args(model, loss, optimizer, penalty, epochs, batch_size, check_finite, checkpoint_every):
    """The loss, optimizer and penalty objects ``fit`` uses, after checking its arguments."""
    loss = get_loss(loss if loss is not None else (model.loss or "cross_entropy"))
    if optimizer is None:
        optimizer = model.optimizer if model.optimizer is not None else Adam(1e-3)
    validation.check_positive_int("epochs", epochs)
    validation.check_positive_int("batch_size", batch_size)
    if check_finite not in ("loss", "all", False, None):
        raise ValueError(f"check_finite must be 'loss', 'all' or False, got {check_finite!r}")
    if checkpoint_every is not None:
        validation.check_positive_int("checkpoint_every", checkpoint_every)
    if isinstance(penalty, (int, float)) and not isinstance(penalty, bool):
        penalty = L2(penalty)
    return loss, get_optimizer(optimizer), penalty


def _device_data(model, loss, X, y, validation_data):
    """Training and validation arrays checked and on the model's device, once."""
    Xd, _ = validation.check_X(model, X)
    yd = validation.check_y(model, loss, y, Xd.shape[0])
    if validation_data is None:
        return Xd, yd, None
    Xv, yv = validation_data
    Xvd, _ = validation.check_X(model, Xv, name="validation X")
    return Xd, yd, (Xvd, validation.check_y(model, loss, yv, Xvd.shape[0], name="validation y"))


def _device_weights(model, sample_weight, n, distributed):
    """Sample weights checked and on the model's device, or None."""
    if sample_weight is None:
        return None
    if distributed:
        raise ValueError("sample_weight with distributed training is not supported yet")
    w = np.asarray(to_numpy(sample_weight), dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have one weight per sample ({n}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError("sample_weight must be finite, non-negative and not all zero")
    return model.be.asarray(w)


class _Reader:
    """Reads the step program's results into the training position, as seldom as the callbacks allow, and
    hands each step's loss to their ``on_batch_end``."""

    def __init__(self, program, state, batches, hooks):
        self.program, self.state, self.batches, self.hooks = program, state, batches, hooks
        # distributed ranks read in step: at epoch ends and checkpoints only
        self.live = state.comm.size == 1 and any(cb.live for cb in hooks)
        self.every = 1  # steps between reads while live: re-estimated for about one read a second

    def begin(self, pos):
        self.read_to, self.started, self.first = pos.step, time.perf_counter(), pos.step

    def due(self, done: int) -> bool:
        return self.live and done - self.read_to >= self.every

    def collect(self, pos, epoch: int, done: int):
        """Steps read_to..done into ``pos``; a non-finite step raises (its update and later ones were skipped)."""
        start, self.read_to = self.read_to, done
        results = self.program.read(start, done)
        if results.first_bad is not None:
            bad = results.first_bad
            self.state.optimizer.step_count -= done - bad  # those updates were skipped on the device
            raise FloatingPointError(
                f"{results.bad_kind} became non-finite at epoch {epoch + 1}, step {bad + 1} "
                f"(loss {float(results.losses[bad - start])}); parameters are those before this step. "
                "Lower the learning rate or enable clipping (clip_norm=...)")
        losses, n, size, steps = results.losses.tolist(), self.batches.n, self.batches.size, self.batches.steps
        pos.batch_losses.extend((value, min(size, n - (start + k) * size)) for k, value in enumerate(losses))
        if results.correct is not None:
            pos.correct += int(results.correct.sum())
        for k, value in enumerate(losses):  # after pos is complete: a checkpoint may save it
            logs = {"loss": value, "steps": steps, "epoch": epoch + 1, "global_step": epoch * steps + start + k + 1}
            for cb in self.hooks:
                cb.on_batch_end(self.state, start + k + 1, logs)
        seconds_per_step = (time.perf_counter() - self.started) / max(done - self.first, 1)
        self.every = max(1, int(1.0 / max(seconds_per_step, 1e-6)))


def _end_epoch(state, hooks, n, val, classify) -> dict:
    """The epoch's logs (validation scored), recorded in the history, checked for divergence and across replicas,
    and handed to the callbacks; returns them."""
    pos = state.position
    logs = {"epoch": state.epoch + 1, "train_loss": sum(v * k for v, k in pos.batch_losses) / n, "lr": pos.lr,
            "seconds": pos.elapsed()}
    if classify:
        logs["train_accuracy"] = float(pos.correct) / n
    if val is not None:
        scores = _sharded_scores(state.model, val, state.comm)
        logs["val_loss"] = scores["loss"]
        if "accuracy" in scores:
            logs["val_accuracy"] = scores["accuracy"]
    state.history.on_epoch_end(state, logs)
    _warn_if_diverging(state, classify)
    state.comm.check_replicas(state.model.flat_params, state.epoch)
    for cb in hooks:
        cb.on_epoch_end(state, logs)
    return logs


def _save_training(path, state, callbacks, signature, pos: _Position, extra=None, pending=False):
    from .checkpoint import save

    model, optimizer = state.model, state.optimizer
    arrays = {}
    if pos.order is not None:
        arrays["order"] = np.asarray(pos.order, dtype=np.int64)
    if state.best_params is not None:
        arrays["best_params"] = to_numpy(state.best_params)
    training = {"epoch": pos.epoch, "step": pos.step, "batch_losses": pos.batch_losses, "correct": pos.correct,
                "seconds": pos.elapsed() if pos.step else pos.seconds, "lr": pos.lr, "rng": model.be.state(),
                "history": state.history.as_dict(),
                "best_monitor": state.best_monitor if math.isfinite(state.best_monitor) else None,
                "callbacks": [cb.get_state() for cb in callbacks], "signature": signature}
    save(model, path, optimizer=optimizer, extra={**(extra or {}), "training": training}, arrays=arrays,
         pending=pending)


def _load_training(path, state, callbacks, signature, allow_other_data=False) -> _Position:
    from .checkpoint import CheckpointError, read, section

    model, optimizer = state.model, state.optimizer
    try:
        tensors, meta = read(path)
    except CheckpointError as e:  # a damaged file: the previous one, kept beside it by every save
        previous = f"{path}.prev"
        if not os.path.exists(previous):
            raise
        warnings.warn(f"{path} is damaged ({e}); resuming from the previous checkpoint {previous}", RuntimeWarning,
                      stacklevel=3)
        tensors, meta = read(previous)
    try:
        training = json.loads(meta["extra"])["training"]
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a training checkpoint (saved without fit(checkpoint=...))") from None
    saved = training["signature"]
    saved["model"] = json.loads(json.dumps(saved["model"]))  # compare as JSON would store it
    current = json.loads(json.dumps(signature))
    if "data" in saved and saved["data"] != current["data"] and not allow_other_data:
        raise ValueError(f"cannot resume from {path}: it was trained on other data (digest {saved['data']}, this data "
                         f"{current['data']}); resume on its own data, or allow_other_data=True "
                         "(mlp train --allow-other-data) to continue on this data knowingly")
    changed = [k for k in current if k != "data" and saved.get(k) != current[k]]
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {current[k]!r} now" for k in changed)
        raise ValueError(f"cannot resume from {path} with a different configuration ({details})")
    model.load_parameters(section(tensors, "param"))
    info = json.loads(meta["optimizer"])
    optimizer.load_state_dict({"step_count": info["step_count"], "lr_scale": info["lr_scale"],
                               **section(tensors, "optim")})
    model.be.set_state(training["rng"])
    for name, values in training["history"].items():
        setattr(state.history, name, values)
    extra = section(tensors, "extra")
    if "best_params" in extra:
        state.best_params = model.be.asarray(extra["best_params"])
    state.best_monitor = training["best_monitor"] if training["best_monitor"] is not None else math.inf
    for cb, cb_state in zip(callbacks, training["callbacks"]):
        cb.set_state(cb_state)
    if state.comm.rank:  # the file holds rank 0's generator
        model.be.reseed((model.be.seed or 0) + 7919 * state.comm.rank + training["epoch"])
    order = extra.get("order")
    return _Position(epoch=training["epoch"], step=training["step"], order=order,
                     batch_losses=[tuple(b) for b in training["batch_losses"]], correct=training["correct"],
                     seconds=training["seconds"], lr=training["lr"])


def _forward_batches(model, Xd, batch_size):
    xp = model.be.xp
    n = Xd.shape[0]
    outs = [model.forward(Xd[lo:min(lo + batch_size, n), ...], training=False) for lo in range(0, n, batch_size)]
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


def _result(model, value, host_input: bool):
    return model.be.to_host_result(value) if host_input else value


def predict_proba(model: Sequential, X: ArrayLike, batch_size: int = 1024) -> ArrayLike:
    """Class probabilities: softmax or sigmoid, as the model's loss implies.

    Parameters
    ----------
    model : Sequential
        A trained model.
    X : array_like
        Inputs, (N, features).
    batch_size : int, default 1024
        Rows per forward pass.

    Returns
    -------
    array
        (N, classes) probabilities: NumPy for host input, else ``X``'s library.
    """
    validation.check_positive_int("batch_size", batch_size)
    Xd, host = validation.check_X(model, X)
    loss = model.loss or get_loss("cross_entropy")
    return _result(model, loss.probabilities(model.be.xp, _forward_batches(model, Xd, batch_size)), host)


def predict(model: Sequential, X: ArrayLike, batch_size: int = 1024) -> ArrayLike:
    """Class labels (multiclass, binary) or outputs (regression, one column squeezed).

    Parameters
    ----------
    model : Sequential
        A trained model.
    X : array_like
        Inputs, (N, features).
    batch_size : int, default 1024
        Rows per forward pass (memory, not results).

    Returns
    -------
    array
        (N,) labels or (N,) / (N, outputs) values: NumPy for host input (NumPy, lists), else ``X``'s library.
    """
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


def evaluate(model: Sequential, X: ArrayLike, y: ArrayLike, batch_size: int = 1024) -> dict:
    """Mean loss (without penalties) and accuracy (classification) or MSE/MAE/R² (regression).

    Parameters
    ----------
    model : Sequential
        A trained model.
    X : array_like
        Inputs, (N, features).
    y : array_like
        Targets, as for :func:`fit`.
    batch_size : int, default 1024
        Rows per forward pass.

    Returns
    -------
    dict
        ``{"loss": ..., "accuracy": ...}`` or ``{"loss", "mse", "mae", "r2"}``.
    """
    validation.check_positive_int("batch_size", batch_size)
    xp = model.be.xp
    loss = model.loss or get_loss("cross_entropy")
    Xd, _ = validation.check_X(model, X)
    yd = validation.check_y(model, loss, y, Xd.shape[0])
    out = _forward_batches(model, Xd, batch_size)
    scores = {"loss": float(loss.value_and_grad(xp, model.ops, out, yd)[0])}
    if loss.task == "multiclass":
        labels = yd if yd.ndim == 1 else xp.argmax(yd, axis=1)  # integer or one-hot / soft targets
        scores["accuracy"] = float(xp.mean(xp.astype(xp.argmax(out, axis=1) == labels, out.dtype)))
    elif loss.task == "binary":
        pred = xp.astype(out > 0, out.dtype)
        scores["accuracy"] = float(xp.mean(xp.astype(pred == xp.reshape(yd, pred.shape), out.dtype)))
    else:
        from .metrics import regression_scores

        scores.update(regression_scores(to_numpy(yd), to_numpy(out)))
    return scores
