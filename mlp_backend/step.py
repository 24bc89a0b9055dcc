"""The training step as one program: forward, loss, backward, penalty, clipping and update, with no host read.

``fit`` builds one ``StepProgram`` per call and runs it once per mini-batch. The program keeps on the
device what a plain training loop reads on the host after every step:

- the batch's loss and (classification) count of correct predictions, written into arrays of one slot per
  step of the epoch;
- the epoch's sample order and the optimizer's per-step scalars (schedule, bias corrections), built for the
  whole epoch and copied to the device once (``begin_epoch``), into the same arrays every epoch;
- the step counter: which step of the epoch runs next. Each step reads its batch's positions in the order,
  its result slots and its optimizer record from it on the device, and advances it, so every step is the
  same call with the same arguments (on NumPy, CuPy and torch no host scalar and no host slicing), the
  property that lets a step be captured once and replayed;
- a sticky flag set by the first step whose loss (or, with ``check_finite="all"``, gradient) is not
  finite. It reaches the optimizer as the record's ``skip`` slot, so that step's update and every one
  after it are not made: parameters and optimizer state stay those before the bad step, without the
  host having looked.

That bookkeeping is three fused ops of the kernel table, each one kernel on a GPU (one call on the CPU) where it
was a dozen small ones: ``gather_batch`` (the positions and the batch's rows), ``count_correct`` and
``record_step`` (the loss, the flag, the update's record, the counter).

Because every full batch is the same call, :class:`StepGraph` can record one on a CUDA device and replay the
recording for every later full batch: no Python, no launches one by one (``fit(graph=...)``).

``read`` is the program's one host synchronisation: ``fit`` calls it at the end of an epoch, before a
checkpoint, and every few steps when it shows progress.

Every array a step makes is the program's, in its :class:`~mlp_backend.backend.Workspace`: the gathered
batch, each layer's outputs, saved values and gradients (handed to the layers for the step), the loss's gradient,
the penalty's and the accuracy count's temporaries. The first run at a batch shape makes them; every later
run writes into them, so a step allocates nothing that grows with the batch (tested with tracemalloc) and
could be captured once and replayed as a CUDA graph. The last, partial batch of an epoch has a shape of its
own and so arrays of its own, made at its first run: padding it to a full batch would need a mask in every
mean (the loss, BatchNorm's statistics) and would change today's numbers. Where arrays stay new each step:
libraries without ``out=`` (array_api_strict, torch on a GPU: the Array API has none; torch CPU tensors write
through NumPy views), the temporaries of what is written with array functions (a Softmax or activation layer, the
reference's BatchNorm/LayerNorm off NumPy, losses such as MSE and soft targets, sample weights: a loss's gradient is
then copied into the program's array, and on NumPy such a layer's output too).

On NumPy, :class:`StepCalls` replays a full batch's step as the list of its calls, each bound to its arrays: the
same calls without the Python between them (``fit(graph=...)``, as :class:`StepGraph` on a CUDA device).
"""
from __future__ import annotations

import contextlib
import inspect
import warnings
from dataclasses import dataclass

import numpy as np

from .distributed import SingleProcess
from .backend import Tape, Workspace, to_numpy
from .kernels.reference import LOSS_NOT_FINITE  # a value of the per-step flag


@dataclass
class StepResults:
    """What ``read`` hands the host for steps ``[start, stop)`` of the epoch."""

    losses: np.ndarray
    correct: np.ndarray | None
    first_bad: int | None  # the epoch's step index of the first non-finite step, if any
    bad_kind: str | None   # "loss" or "gradient"


class StepProgram:
    def __init__(self, model, loss, optimizer, *, steps: int, batch_size: int | None = None, penalty=None,
                 check_finite="loss", comm=None):
        self.model, self.loss, self.optimizer, self.penalty = model, loss, optimizer, penalty
        self.check_finite, self.comm = check_finite, SingleProcess() if comm is None else comm
        be, xp = model.be, model.be.xp
        self.classify = loss.task == "multiclass"
        self.weights = [layer.params["W"] for layer in model.layers if "W" in layer.params]
        self.w_grads = [layer.grads["W"] for layer in model.layers if "W" in layer.grads]
        self.losses = be.zeros((steps,))
        self.correct = xp.zeros((steps,), dtype=xp.int64, device=be.device)
        self.flags = xp.zeros((steps,), dtype=xp.int8, device=be.device)
        self.bad = be.zeros(())  # sticky: 1 from the first non-finite step on
        self.counter = xp.zeros((1,), dtype=xp.int64, device=be.device)  # the step of the epoch that runs next
        self.batch_size = batch_size  # of the global batch: where step k's samples start in the order
        self.order = self.records = None  # this epoch's, refilled in place (begin_epoch)
        self.workspace = Workspace(be)
        self._loss_takes_out = "out" in inspect.signature(loss.value_and_grad).parameters
        self.reads = 0  # times the host has set or read the program (begin_epoch, read): when callbacks run

    def begin_epoch(self, order, first_step: int):
        """The epoch's sample order and the optimizer's scalar records for its remaining steps, each copied once
        into the program's own array, and the counter set to ``first_step``: the same arrays every epoch, so a
        captured step keeps pointing at them."""
        be, steps = self.model.be, self.losses.shape[0]
        self.reads += 1
        be.upload(np.array([first_step], dtype=np.int64), out=self.counter)
        order = np.asarray(order, dtype=np.int64)
        if self.order is None or self.order.shape != order.shape:
            self.order = be.asarray_int(np.zeros(order.shape, dtype=np.int64))
        be.upload(order, out=self.order)
        rows = np.array(self.optimizer.records(steps - first_step), dtype=np.float64)
        epoch = np.zeros((steps, rows.shape[1]))  # whole, not into a slice: writes through views are not portable
        epoch[first_step:] = rows
        if self.records is None or self.records.shape != epoch.shape:
            self.records = be.zeros(epoch.shape)
        be.upload(epoch, out=self.records)

    def run(self, X, y, part: tuple[int, int] | None = None, share: float = 1.0, sample_weight=None):
        """The step the counter holds: its samples, its slot of the epoch's results, its update unless flagged;
        then the counter moves on. Every full batch is the same call.

        ``part``: the positions ``[first, stop)`` of this process's samples within the global batch (default:
        all of a full one). With a communicator, ``share`` is this rank's fraction of the global batch: the
        gradient and loss are weighted by it and summed over ranks (the global batch's means). The last,
        partial batch of an epoch passes its own ``part``. ``sample_weight``: one weight per sample of ``X``:
        the batch's loss is its samples' weighted mean (as scikit-learn's MLP).
        """
        layers = self.model.layers
        for layer in layers:  # the layers' arrays come from the workspace for this step only
            layer.workspace = self.workspace
        try:
            with self.quiet():
                return self._run(X, y, part or (0, self.batch_size), share, sample_weight)
        finally:
            for layer in layers:
                layer.workspace = None

    def quiet(self):
        """A diverging step is reported once, by fit, not by NumPy's warnings on the way."""
        return np.errstate(all="ignore") if self.check_finite else contextlib.nullcontext()

    def _buffer(self, name, shape, dtype=None):
        return self.workspace.get(self, name, shape, dtype)

    def _ops(self):
        """The model's kernel set; while a tape records the step, the same ops written on it (``Tape.ops``)."""
        tape = self.workspace.tape
        return self.model.ops if tape is None else tape.ops(self.model.ops)

    def unrecordable(self) -> str | None:
        """Why this program's step cannot be replayed as its bound calls (``StepCalls``), else None. All it computes
        is its layers' planned calls, ops of the kernel set, and host calls (``_host_call``: a loss written with
        array functions or with sample weights, the penalty, the gradient's sum; ``Workspace.host``: a layer that
        plans nothing, the clipping norm), but for a distributed step's exchanges."""
        if not isinstance(self.comm, SingleProcess):
            return "a distributed step exchanges gradients between processes"
        return None

    def _run(self, X, y, part, share, sample_weight):
        model, be, xp, ops = self.model, self.model.be, self.model.be.xp, self._ops()
        step, (first, stop) = self.counter, part
        n = stop - first
        # the samples at counter * batch_size + first, ... of the epoch's order, gathered on the device
        idx, xb, yb = ops.gather_batch(xp, X, y, self.order, step, self.batch_size, first, n,
                                       idx=self._buffer(f"idx{n}", (n,), xp.int64),
                                       xb=self._buffer("x", (n, *X.shape[1:]), X.dtype),
                                       yb=self._buffer("y", (n, *y.shape[1:]), y.dtype))
        weights = None if sample_weight is None else (lambda: be.take_rows(sample_weight, idx))
        value = self._forward_backward(xb, yb, weights, step)
        value = self.comm.reduce_step(value, model.flat_grads, share)
        check = self.check_finite
        record = None
        if self.records is not None:  # the update's scalars: the workspace's array (a new one where it has none)
            record = self._buffer("record", self.records.shape[1:])
            record = be.zeros(self.records.shape[1:]) if record is None else record
        # A non-finite element makes the sum non-finite: one pass instead of an isfinite mask.
        grad_sum = self._host_call(lambda: (xp.sum(model.flat_grads),))[0] if check == "all" else None
        # the loss into its slot, the step's flag, the update's record (skipped from the first flag on), counter + 1
        ops.record_step(xp, value, self.counter, self.losses, record, self.records, flags=self.flags if check else None,
                        bad=self.bad if check else None, grad_sum=grad_sum)
        skip = None
        if check and not isinstance(self.comm, SingleProcess):
            self.comm.agree(self.bad)  # every replica skips together: the update reads the agreed flag
            skip = self.bad
        # the record's completion written with array functions: now, and on a tape recording the step as one call
        self.optimizer.step(model.flat_params, model.flat_grads, ops, skip=skip, record=record,
                            host=lambda complete: self.workspace.host(self.optimizer, "complete", complete))

    def host_step(self):
        """What a step changes on the host rather than the device, done without the step: the optimizer's count
        (its records for the epoch are already on the device). A replayed recording of the step calls it."""
        self.optimizer.step_count += 1

    def loss_and_gradient(self, X, y, sample_weight=None):
        """The loss of ``(X, y)`` (with the penalty and sample weights) as a 0-d array, and its gradient written
        into ``model.flat_grads``: a step's forward and backward pass without the update. L-BFGS evaluates this."""
        return self._forward_backward(X, y, None if sample_weight is None else (lambda: sample_weight))

    def _forward_backward(self, xb, yb, weights=None, step=None):
        """Forward, loss, backward and penalty of one batch (``weights()``: its sample weights, if any); counts its
        correct predictions into slot ``step`` (the counter)."""
        model, xp, ops = self.model, self.model.be.xp, self._ops()
        out = model.forward(xb, training=True)
        value, grad = self._loss_value_and_grad(xp, ops, out, yb, weights)
        if self.classify and step is not None:
            ops.count_correct(xp, out, yb, step, self.correct)
        model.backward(grad)
        if self.penalty is not None:
            value = self._add_penalty(value)
        return value

    def _loss_value_and_grad(self, xp, ops, out, yb, weights=None):
        """The loss and its gradient, the gradient in the program's array (so the layers get the same array at every
        step). A loss that computes with array functions rather than the kernel set's ops, or with sample weights
        (``weights()``), is one host call on a tape recording the step (``_host_call``)."""
        loss, be, buffer = self.loss, self.model.be, self._buffer("grad", out.shape)
        kwargs = {"out": buffer} if self._loss_takes_out else {}
        if weights is None and loss.all_in_ops(yb):
            return loss.value_and_grad(xp, ops, out, yb, **kwargs)

        def computed():
            value, grad = loss.value_and_grad(xp, self.model.ops, out, yb, **kwargs)
            if weights is not None:  # each row's gradient carries 1/n: reweighted to w_i / sum(w) (allocates)
                wb = weights()
                norm = wb / xp.sum(wb)
                value = xp.sum(loss.per_sample(xp, out, yb) * norm)
                grad = grad * xp.reshape(norm * out.shape[0], (-1,) + (1,) * (grad.ndim - 1))
            return value, grad if buffer is None or grad is buffer else be.copy(grad, out=buffer)
        return self._host_call(computed)

    def _add_penalty(self, value):
        """The loss plus the penalty, whose gradient is added into the weights' gradients: one host call on a tape
        recording the step (its sum is the host's arithmetic)."""
        be, ops, penalty = self.model.be, self.model.ops, self.penalty
        parts = [(w, g, self._buffer(f"penalty{i}", w.shape)) for i, (w, g) in enumerate(zip(self.weights,
                                                                                             self.w_grads))]

        def penalised():
            return (value + sum(penalty.step(be, ops, w, g, scratch) for w, g, scratch in parts),)
        return self._host_call(penalised)[0]

    def _host_call(self, compute):
        """``compute()``: a value (0-d) and arrays that are the same at every call. While a tape records the step,
        ``compute`` goes on it as one call, its value written into a 0-d array of its own (the one returned)."""
        value, *arrays = compute()
        tape = self.workspace.tape
        if tape is None:
            return (value, *arrays)
        kept = np.array(value)

        def call():
            kept[...] = compute()[0]
        tape.calls.append(call)
        return (kept, *arrays)

    def read(self, start: int, stop: int) -> StepResults:
        """Host copies of steps ``[start, stop)``: the one synchronisation (and, distributed, one reduction)."""
        self.reads += 1
        flags = np.array(to_numpy(self.flags[start:stop]))
        losses = np.array(to_numpy(self.losses[start:stop]))
        correct = np.array(to_numpy(self.correct[start:stop])) if self.classify else None
        self.comm.reduce_results(losses, flags, correct)  # distributed: the global batch's
        bad = np.flatnonzero(flags)
        first = int(bad[0]) if bad.size else None
        return StepResults(
            losses=losses, correct=correct, first_bad=None if first is None else start + first,
            bad_kind=None if first is None else ("loss" if flags[first] == LOSS_NOT_FINITE else "gradient"))


class StepCalls:
    """A program's full-batch step replayed as the list of its calls, each bound to its arrays (NumPy, ``fit(graph=)``).

    On NumPy a step program makes the same calls on the same arrays at every full batch. Once its layers have
    planned theirs (after a step), one step runs with a :class:`~mlp_backend.backend.Tape` that collects every call
    as it is made: the layers' planned calls and the step's own ops (gather, loss, count, record, update), each
    bound to its arrays with its checks done. Later steps make those calls alone (the same kernels on the same
    arrays in the same order: the same bits) and the step's host part (``StepProgram.host_step``), without the
    Python between them. After the host has read or reset the program (``reads``: an epoch's start, progress, a
    checkpoint), the moments callbacks run and may change the model, the tape is dropped and made again: at once
    where the last tape was replayed (a second try at the next step if a changed layer had nothing planned yet),
    else (the fit's first steps, or reads at every step) after one step as usual, so a fit that reads at every step
    never pays for a tape. A step the tape cannot hold (``Tape.missing``: a call not bound, say a parallel kernel)
    runs as usual until the next read.
    """

    # fit(graph="auto") replays epochs of at least this many full batches: a tape is made at every epoch's start,
    # and it costs more than a step as usual, won back by two replays (MLPRegressor on 442 samples: 2 full batches
    # an epoch 11% slower replayed, 3 level, 4 12% faster; bench/RESULTS.md)
    MIN_FULL_BATCHES = 3

    def __init__(self, program: StepProgram):
        self.program = program
        program.workspace.hosts_calls = True  # a layer that plans nothing is one host call (Workspace.host)
        self.calls, self.reads, self.replayed = None, None, False  # the tape, the reads it follows, whether it ran
        self.waits = self.tries = 0  # steps to run as usual, then tapes to try, until the next read

    def run(self, X, y, part=None, share=1.0, sample_weight=None):
        program = self.program
        if program.reads != self.reads:
            again = self.calls is not None and self.replayed
            self.waits, self.tries = (0, 2) if again else (1, 1)
            self.calls, self.reads, self.replayed = None, program.reads, False
        if self.calls is not None:
            with program.quiet():
                for call in self.calls:
                    call()
            program.host_step()
            self.replayed = True
            return
        if self.waits or not self.tries:
            self.waits = max(self.waits - 1, 0)
            return program.run(X, y, part, share, sample_weight)
        self.tries -= 1
        tape = program.workspace.tape = Tape()
        try:
            program.run(X, y, part, share, sample_weight)
        finally:
            program.workspace.tape = None
        if tape.missing is None:
            self.calls = tuple(tape.calls)


class StepGraph:
    """A program's full-batch step recorded once on the device and replayed (``fit(graph=...)``).

    The first call runs the step as usual, with the products a recording uses (``Backend.graph_products``): its
    arrays are made and its kernels compiled, so the recording allocates no workspace array and compiles nothing.
    The second call records the step with the same arguments (``Backend.capture``: nothing runs), replays the
    recording and does the step's host part (``StepProgram.host_step``); so does every later call. The counter on
    the device moves each replay to the next batch of the epoch, its result slots and its optimizer record. The
    arguments must be the same arrays at every call (``fit``'s device copies of the data): a replay reads the
    addresses the recording saw. ``fall_back``: where recording fails, warn and run every step as usual.
    """

    def __init__(self, program: StepProgram, fall_back: bool = False):
        self.program, self.fall_back = program, fall_back
        self.warmed, self.replay, self.failed = False, None, None

    def run(self, X, y, part=None, share=1.0, sample_weight=None):
        program = self.program
        if self.failed is not None:
            return program.run(X, y, part, share, sample_weight)
        if not self.warmed:
            self.warmed = True
            with program.model.be.graph_products():
                return program.run(X, y, part, share, sample_weight)
        if self.replay is None:
            count = program.optimizer.step_count
            try:
                self.replay = program.model.be.capture(lambda: program.run(X, y, part, share, sample_weight))
            except Exception as e:  # nothing ran: this step and every later one run as usual
                program.optimizer.step_count = count
                if not self.fall_back:
                    raise
                self.failed = f"{type(e).__name__}: {e}"
                warnings.warn(f"graph mode is off for this fit: recording the training step failed ({self.failed}); "
                              "the steps run one launch at a time", RuntimeWarning, stacklevel=3)
                return program.run(X, y, part, share, sample_weight)
            program.optimizer.step_count = count  # the recording ran the step's Python, not its update
        self.replay()
        program.host_step()
