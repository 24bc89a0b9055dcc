"""Numba CUDA kernels for CuPy arrays (passed through ``__cuda_array_interface__``).

The public functions have exactly the reference signatures and side effects and answer NotImplemented
(the registry then runs ``reference.py``) for anything but C-contiguous float32/float64 CuPy arrays.
Kernels launch on CuPy's current stream. Per-element maths comes from ``activations.py``, ``optimizers.py``
and ``elementwise.py`` (shared with the CPU kernels); the ``launch_*`` functions take any CUDA arrays (NumPy
arrays under ``NUMBA_ENABLE_CUDASIM=1``) and are what the simulator tests drive.
"""
from __future__ import annotations

import math

import numpy as np
from numba import float64, int64

from .activations import CODES
from .elementwise import argmax_row, bce_element, record_step_scalars
from .jit import act_derivative, act_forward, rule_element
from .numba_cuda import cuda, overload
from .optimizers import CODES as RULE_CODES
from .optimizers import NAMES, RULES, SKIP
from .scalar_math import fast_exp, fast_expm1, fast_log1p, fast_tanh


def _device_math(exact):
    def typer(x):
        return lambda x: exact(x)
    return typer


# The device's own math functions are fast: the element functions' fast_* are these on the GPU.
for _fast, _exact in ((fast_exp, math.exp), (fast_expm1, math.expm1), (fast_log1p, math.log1p),
                      (fast_tanh, math.tanh)):
    overload(_fast, target="cuda")(_device_math(_exact))

THREADS = 256          # elementwise kernels
ROW_THREADS = 128      # softmax: one block per row; a power of two for the tree reductions
MAX_ROW_THREADS = 256  # size of the shared reduction buffers
MAX_BLOCKS = 8192      # grid-stride loops cover the rest


def _blocks(size, threads):
    return max(1, min(MAX_BLOCKS, (size + threads - 1) // threads))


@cuda.jit(device=True)
def _tree_sum(sums, tid, nt):
    """``sums[0] = sum(sums[:nt])``, ``nt`` a power of two: each thread of the block has written its own ``sums[tid]``
    (the tree adds them in a fixed order: the same bits every run). Every thread of the block must call it."""
    cuda.syncthreads()
    step = nt // 2
    while step > 0:
        if tid < step:
            sums[tid] += sums[tid + step]
        cuda.syncthreads()
        step //= 2
    return sums[0]


# -- softmax cross-entropy: one block per row ---------------------------------------------------
@cuda.jit
def _xent_kernel(z, labels, smoothing, inv_n, grad, row_loss):
    i = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    c = z.shape[1]
    red_max = cuda.shared.array(MAX_ROW_THREADS, float64)
    red_sum = cuda.shared.array(MAX_ROW_THREADS, float64)
    m, total = -math.inf, 0.0
    for j in range(tid, c, nt):
        zj = float64(z[i, j])  # max of mixed float32/float64 does not compile for the device
        m = zj if zj > m else m
        total += zj
    red_max[tid], red_sum[tid] = m, total
    cuda.syncthreads()
    step = nt // 2  # the maximum and the sum in one tree
    while step > 0:
        if tid < step:
            a, b = red_max[tid], red_max[tid + step]
            red_max[tid] = a if a > b else b
            red_sum[tid] += red_sum[tid + step]
        cuda.syncthreads()
        step //= 2
    m, total = red_max[0], red_sum[0]
    y = labels[i]
    zy = z[i, y]  # read before the synchronisation that precedes any write (grad may alias z)
    s = 0.0
    for j in range(tid, c, nt):
        s += math.exp(z[i, j] - m)
    cuda.syncthreads()
    red_sum[tid] = s
    s = _tree_sum(red_sum, tid, nt)
    off = smoothing / c
    for j in range(tid, c, nt):
        hot = (1.0 - smoothing) if j == y else 0.0
        grad[i, j] = (math.exp(z[i, j] - m) / s - off - hot) * inv_n
    if tid == 0:
        loss = m + math.log(s) - (1.0 - smoothing) * zy
        if smoothing > 0:
            loss -= off * total
        row_loss[i] = loss


def launch_softmax_cross_entropy(z, labels, smoothing, grad, row_loss, stream=0, threads=ROW_THREADS):
    n = z.shape[0]
    _xent_kernel[n, threads, stream](z, labels, float(smoothing), 1.0 / n, grad, row_loss)


@cuda.jit
def _mean_kernel(x, out):
    """``out[0] = mean(x)``: one block, its threads' sums added by a tree in a fixed order."""
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    sums = cuda.shared.array(MAX_ROW_THREADS, float64)
    total = 0.0
    for i in range(tid, x.shape[0], nt):
        total += x[i]
    sums[tid] = total
    total = _tree_sum(sums, tid, nt)
    if tid == 0:
        out[0] = total / x.shape[0]


def launch_mean(x, out, stream=0, threads=MAX_ROW_THREADS):
    """The batch's loss from its rows' (``x``), into the one-element ``out``; ``threads`` a power of two up to
    ``MAX_ROW_THREADS``."""
    _mean_kernel[1, threads, stream](x, out)


# -- binary cross-entropy ----------------------------------------------------------------------
@cuda.jit
def _bce_kernel(z, t, inv, grad, elem_loss):
    for i in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        elem_loss[i], d = bce_element(z[i], t[i])
        grad[i] = d * inv


def launch_bce(z, t, grad, elem_loss, stream=0, threads=THREADS):
    _bce_kernel[_blocks(z.size, threads), threads, stream](z, t, 1.0 / z.size, grad, elem_loss)


# -- dropout masks from a counter-based generator -------------------------------------------------
# Element i of mask k is a hash of (base, k, i) (SplitMix64's finaliser). ``base`` and the count ``k`` of masks drawn
# live in a two-element device array that the backend keeps and the launches advance: no per-mask host scalar (a
# captured step replays with new masks), and the pair, saved in checkpoints with the host generator, is all the
# state there is, so a resumed CuPy run draws the same masks as an uninterrupted one.
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


@cuda.jit(device=True)
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@cuda.jit
def _dropout_mask_kernel(out, state, keep, scale):
    seed = _mix(state[0] + (state[1] + np.uint64(1)) * _GOLDEN)  # this mask's seed: the base and the count
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        x = _mix(seed + np.uint64(i + 1) * _GOLDEN)
        u = (x >> np.uint64(40)) * (1.0 / 16777216.0)  # the top 24 bits: uniform on [0, 1)
        out[i] = scale if u < keep else 0


@cuda.jit
def _count_mask_kernel(state):
    if cuda.grid(1) == 0:
        state[1] += np.uint64(1)


def launch_dropout_mask(out, state, keep, stream=0, threads=THREADS):
    """``out`` (1-D) = 1/keep where kept, 0 where dropped, from ``state`` (uint64 ``[base, masks drawn]`` on the
    device), whose count it then advances."""
    _dropout_mask_kernel[_blocks(out.size, threads), threads, stream](out, state, float(keep),
                                                                      out.dtype.type(1.0 / keep))
    _count_mask_kernel[1, 1, stream](state)


def dropout_mask(xp, shape, keep, dtype, state, out=None):
    """A CuPy dropout mask of ``shape`` drawn from ``state`` (see above), written into ``out`` when given."""
    if out is None:
        out = xp.empty(shape, dtype=dtype)
    if out.size:
        launch_dropout_mask(_dev(xp.reshape(out, (-1,))), _dev(state), keep, _stream())
    return out


# -- activations: one kernel per activation, its code a compile-time constant (as on the CPU) -----------
def _bias_act_kernel(code):
    def kernel(z, b, has_bias, alpha):
        cols = z.shape[1]
        for k in range(cuda.grid(1), z.size, cuda.gridsize(1)):
            i, j = k // cols, k % cols
            v = z[i, j] + b[j] if has_bias else z[i, j]
            z[i, j] = act_forward(v, code, alpha)
    return cuda.jit(kernel)


def _act_backward_kernel(code):
    def kernel(dy, saved, alpha, out):
        for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
            out[i] = act_derivative(dy[i], saved[i], code, alpha)
    return cuda.jit(kernel)


BIAS_COLS, BIAS_LANES = 32, 32  # act_backward with the bias gradient: a block's columns and row lanes


def _act_backward_bias_kernel(code):
    """The derivative and, from the same pass, the column sums (a Dense layer's bias gradient): each block takes 32
    columns (a warp reads 32 neighbours of a row), its row lanes stride down them, and a tree over the lanes adds
    their sums in a fixed order (the same bits every run)."""
    def kernel(dy, saved, alpha, out, bias_grad):
        m, n = dy.shape
        lanes = cuda.blockDim.x // BIAS_COLS
        tx, ty = cuda.threadIdx.x % BIAS_COLS, cuda.threadIdx.x // BIAS_COLS
        j = cuda.blockIdx.x * BIAS_COLS + tx
        sums = cuda.shared.array((BIAS_LANES, BIAS_COLS), float64)
        total = 0.0
        if j < n:
            for i in range(ty, m, lanes):
                v = act_derivative(dy[i, j], saved[i, j], code, alpha)
                out[i, j] = v
                total += v
        sums[ty, tx] = total
        cuda.syncthreads()
        step = lanes // 2
        while step > 0:
            if ty < step:
                sums[ty, tx] += sums[ty + step, tx]
            cuda.syncthreads()
            step //= 2
        if ty == 0 and j < n:
            bias_grad[j] = sums[0, tx]
    return cuda.jit(kernel)


_BIAS_ACT = {name: _bias_act_kernel(code) for name, code in CODES.items()}
_ACT_BACKWARD = {name: _act_backward_kernel(code) for name, code in CODES.items()}
_ACT_BACKWARD_BIAS = {name: _act_backward_bias_kernel(code) for name, code in CODES.items()}


def launch_bias_act(z2, b, has_bias, act, alpha, stream=0, threads=THREADS):
    _BIAS_ACT[act][_blocks(z2.size, threads), threads, stream](z2, b, has_bias, alpha)


def launch_act_backward(dy, saved, act, alpha, out, stream=0, threads=THREADS):
    _ACT_BACKWARD[act][_blocks(dy.size, threads), threads, stream](dy, saved, alpha, out)


def launch_act_backward_bias(dy, saved, act, alpha, out, bias_grad, stream=0, lanes=BIAS_LANES):
    """2-D ``dy``, ``saved`` and ``out``; ``lanes`` a power of two up to ``BIAS_LANES``."""
    blocks = (dy.shape[1] + BIAS_COLS - 1) // BIAS_COLS
    _ACT_BACKWARD_BIAS[act][blocks, BIAS_COLS * lanes, stream](dy, saved, alpha, out, bias_grad)


# -- optimizers: one kernel per rule of the optimizer table, the step's scalars read from the record ``hp`` on
# the device; skip set: no write. A state the rule does not have is ``g`` (read, never written). ---------------
def _update_kernel(code):
    n_state = len(RULES[NAMES[code]].state)

    def kernel(p, g, s0, s1, hp):
        if hp[SKIP] != 0:
            return
        for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
            pi, a, b = rule_element(code, p[i], g[i], s0[i], s1[i], hp)
            p[i] = pi
            if n_state >= 1:
                s0[i] = a
            if n_state >= 2:
                s1[i] = b
    return cuda.jit(kernel)


_UPDATE = {name: _update_kernel(code) for name, code in RULE_CODES.items()}


def launch_update(rule, p, g, s0, s1, hp, stream=0, threads=THREADS):
    _UPDATE[rule][_blocks(p.size, threads), threads, stream](p, g, g if s0 is None else s0, g if s1 is None else s1,
                                                             hp)


# -- a training step's bookkeeping ----------------------------------------------------------------
COUNT_THREADS = 256  # count_correct: one block, a power of two for its tree reduction


_argmax_row = cuda.jit(device=True)(argmax_row)
_record_step_scalars = cuda.jit(device=True)(record_step_scalars)


@cuda.jit
def _count_correct_kernel(logits, targets, one_hot, counter, correct):
    tid = cuda.threadIdx.x
    hits = cuda.shared.array(COUNT_THREADS, int64)
    count = 0
    for i in range(tid, logits.shape[0], cuda.blockDim.x):
        label = _argmax_row(targets, i) if one_hot else targets[i, 0]
        if _argmax_row(logits, i) == label:
            count += 1
    hits[tid] = count
    count = _tree_sum(hits, tid, cuda.blockDim.x)
    c = counter[0]
    if tid == 0 and 0 <= c < correct.shape[0]:
        correct[c] = count


def launch_count_correct(logits, targets, one_hot, counter, correct, stream=0, threads=COUNT_THREADS):
    """``reference.count_correct`` on CUDA arrays, ``targets`` 2-D (labels as one column); ``threads`` a power of
    two up to ``COUNT_THREADS``."""
    _count_correct_kernel[1, threads, stream](logits, targets, one_hot, counter, correct)


@cuda.jit
def _gather_batch_kernel(X, y, order, counter, first, batch_size, idx, xb, yb):
    """Block row b copies samples b, b + gridDim.y, ...; its threads stride over the sample's X and y values."""
    start = counter[0] * batch_size + first
    fx, width = X.shape[1], X.shape[1] + y.shape[1]
    for i in range(cuda.blockIdx.y, idx.shape[0], cuda.gridDim.y):
        if start + i >= order.shape[0]:  # nothing to raise to on the device: the rows stay unwritten
            return
        r = order[start + i]
        if r < 0 or r >= X.shape[0]:
            continue
        j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if j0 == 0:
            idx[i] = r
        for j in range(j0, width, cuda.blockDim.x * cuda.gridDim.x):
            if j < fx:
                xb[i, j] = X[r, j]
            else:
                yb[i, j - fx] = y[r, j - fx]


def launch_gather_batch(X, y, order, counter, first, batch_size, idx, xb, yb, stream=0, threads=THREADS):
    """``reference.gather_batch`` on CUDA arrays, ``X``, ``y``, ``xb`` and ``yb`` 2-D (one row per sample)."""
    width = X.shape[1] + y.shape[1]
    grid = (min(4, _blocks(width, threads)), min(idx.shape[0], 65535))
    _gather_batch_kernel[grid, threads, stream](X, y, order, counter, first, batch_size, idx, xb, yb)


@cuda.jit
def _record_step_kernel(value, counter, losses, record, records, flags, bad, grad_sum, copy_record, check,
                        check_grads):
    if cuda.grid(1) == 0:  # outside the epoch's steps it writes nothing: there is nothing to raise to on the device
        _record_step_scalars(value, counter, losses, record, records, flags, bad, grad_sum, copy_record, check,
                             check_grads)


def launch_record_step(value, counter, losses, record, records, flags, bad, grad_sum, stream=0):
    """``reference.record_step`` on CUDA arrays; ``value``, ``bad`` and ``grad_sum`` one-element arrays, and
    ``record``, ``records``, ``flags``, ``bad``, ``grad_sum`` None where not used: ``value``, which the kernel only
    reads, stands in for them."""
    copy_record, check = records is not None, flags is not None
    _record_step_kernel[1, 1, stream](
        value, counter, losses, record if copy_record else value, records if copy_record else value.reshape(1, 1),
        flags if check else value, bad if check else value, value if grad_sum is None else grad_sum,
        copy_record, check, grad_sum is not None)


# -- the registry-facing functions (CuPy arrays) -------------------------------------------------
_STREAMS = {}
_VIEWS: dict = {}  # (address, shape, strides, dtype) -> numba's view of that memory
_MAX_VIEWS = 4096


def _dev(x):
    """numba's device-array view of a CuPy array, made once per (address, shape, strides, dtype). numba converts a
    CuPy argument at every launch (about 70 µs of the 107 µs a launch cost on an H100) and synchronises CuPy's
    stream first (a synchronisation inside a captured step breaks the capture); a view made without either
    launches in order on CuPy's stream (``_stream``). The view holds no reference to the CuPy array (``owner``):
    it is used only while the caller holds the array, and memory reused at the same address with the same
    layout is the same view."""
    key = (x.data.ptr, x.shape, x.strides, x.dtype.str)
    view = _VIEWS.get(key)
    if view is None:
        if len(_VIEWS) >= _MAX_VIEWS:
            _VIEWS.clear()
        view = _VIEWS[key] = cuda.from_cuda_array_interface(x.__cuda_array_interface__, owner=None, sync=False)
    return view


def _stream():
    """Numba's handle on CuPy's current stream (cached per stream pointer)."""
    import cupy

    ptr = cupy.cuda.get_current_stream().ptr
    if ptr not in _STREAMS:
        _STREAMS[ptr] = cuda.external_stream(ptr) if ptr else cuda.default_stream()
    return _STREAMS[ptr]


def _fusable(*arrays) -> bool:
    first = arrays[0]
    if type(first).__module__.split(".")[0] != "cupy" or first.dtype.type not in (np.float32, np.float64):
        return False
    return all(type(a) is type(first) and a.dtype == first.dtype and a.flags.c_contiguous for a in arrays)


def _given(*arrays):
    return tuple(a for a in arrays if a is not None)


def softmax_cross_entropy(xp, logits, labels, label_smoothing=0.0, out=None):
    if not (_fusable(logits, *_given(out)) and logits.ndim == 2 and labels.ndim == 1
            and labels.dtype.kind in "iu" and labels.shape[0] == logits.shape[0]
            and (out is None or out.shape == logits.shape)):
        return NotImplemented
    grad = xp.empty_like(logits) if out is None else out
    row_loss, loss = xp.empty(logits.shape[0], dtype=xp.float64), xp.empty((), dtype=logits.dtype)
    launch_softmax_cross_entropy(_dev(logits), _dev(labels), label_smoothing, _dev(grad), _dev(row_loss), _stream())
    launch_mean(_dev(row_loss), _dev(xp.reshape(loss, (1,))), _stream())  # in the logits' dtype: no cast after
    return loss, grad


def sigmoid_binary_cross_entropy(xp, logits, targets, out=None):
    if not (_fusable(logits, targets, *_given(out)) and targets.shape == logits.shape):
        return NotImplemented
    grad = xp.empty_like(logits) if out is None else out
    elem_loss = xp.empty(logits.shape, dtype=logits.dtype)
    launch_bce(*(_dev(xp.reshape(a, (-1,))) for a in (logits, targets, grad, elem_loss)), _stream())
    return xp.mean(elem_loss), grad


def bias_act(xp, z, b, act, alpha=0.0):
    if not (act in CODES and _fusable(z, *_given(b)) and z.size
            and (b is None or (z.ndim == 2 and b.shape == (z.shape[1],)))):
        return NotImplemented
    z2 = _dev(z if b is not None else xp.reshape(z, (1, -1)))
    launch_bias_act(z2, z2[0] if b is None else _dev(b), b is not None, act, z.dtype.type(alpha), _stream())
    return z


def act_backward(xp, dy, saved, act, alpha=0.0, out=None, bias_grad=None):
    if not (act in CODES and _fusable(dy, saved, *_given(out)) and dy.shape == saved.shape
            and (out is None or out.shape == dy.shape)):
        return NotImplemented
    result = xp.empty_like(dy) if out is None else out
    alpha = dy.dtype.type(alpha)
    if (bias_grad is not None and dy.ndim == 2 and dy.shape[1] and _fusable(dy, bias_grad)
            and bias_grad.shape == (dy.shape[1],)):  # the bias gradient from the same pass
        launch_act_backward_bias(_dev(dy), _dev(saved), act, alpha, _dev(result), _dev(bias_grad), _stream())
        return result
    launch_act_backward(_dev(xp.reshape(dy, (-1,))), _dev(xp.reshape(saved, (-1,))), act, alpha,
                        _dev(xp.reshape(result, (-1,))), _stream())
    if bias_grad is not None:  # a layout the kernel above does not take: CuPy's reduction
        bias_grad[...] = xp.sum(result, axis=0)
    return result


def _flat_ok(p, hp, *others):
    return _fusable(p, hp, *others) and p.ndim == 1 and all(o.shape == p.shape for o in others)


def optimizer_update(xp, rule, p, g, s0, s1, hp):
    states = _given(s0, s1)
    if not (rule in _UPDATE and len(states) == len(RULES[rule].state) and _flat_ok(p, hp, g, *states)):
        return NotImplemented
    launch_update(rule, _dev(p), _dev(g), None if s0 is None else _dev(s0), None if s1 is None else _dev(s1), _dev(hp),
                  _stream())


def record_step(xp, value, counter, losses, record=None, records=None, flags=None, bad=None, grad_sum=None):
    check, copy = flags is not None, records is not None
    if not (_fusable(losses, value, *_given(record, records, bad, grad_sum)) and losses.ndim == 1 and value.ndim == 0
            and counter.dtype == np.int64 and counter.shape == (1,)
            and (not check or (flags.dtype == np.int8 and flags.shape == losses.shape and bad is not None
                               and bad.ndim == 0))
            and (not copy or (record is not None and records.ndim == 2 and record.shape == records.shape[1:]
                              and record.shape[0] > SKIP and records.shape[0] >= losses.shape[0]))  # unchecked there
            and (grad_sum is None or grad_sum.ndim == 0)):
        return NotImplemented

    def one(x):
        return None if x is None else _dev(xp.reshape(x, (1,)))
    launch_record_step(one(value), _dev(counter), _dev(losses), None if record is None else _dev(record),
                       None if records is None else _dev(records), None if flags is None else _dev(flags), one(bad),
                       one(grad_sum), _stream())


def gather_batch(xp, X, y, order, counter, batch_size: int, first: int, n: int, idx=None, xb=None, yb=None):
    arrays = (X, y, order, counter, idx, xb, yb)
    if not (all(type(a).__module__.split(".")[0] == "cupy" and a.flags.c_contiguous for a in arrays)
            and X.dtype.type in (np.float32, np.float64) and y.dtype.kind in "iuf" and xb.dtype == X.dtype
            and yb.dtype == y.dtype and order.dtype == counter.dtype == idx.dtype == np.int64 and order.ndim == 1
            and counter.shape == (1,) and idx.shape == (n,) and xb.shape == (n, *X.shape[1:])
            and yb.shape == (n, *y.shape[1:]) and X.shape[0] == y.shape[0] and n > 0):
        return NotImplemented

    def rows(a):
        return _dev(xp.reshape(a, (a.shape[0], -1)))
    launch_gather_batch(rows(X), rows(y), _dev(order), _dev(counter), first, batch_size, _dev(idx), rows(xb), rows(yb),
                        _stream())
    return idx, xb, yb


def count_correct(xp, logits, targets, counter, correct):
    if not (_fusable(logits) and logits.ndim == 2 and logits.shape[1] > 0
            and type(targets) is type(logits) and targets.flags.c_contiguous and targets.shape[0] == logits.shape[0]
            and targets.ndim in (1, 2) and (targets.dtype.kind in "iu" if targets.ndim == 1 else
                                            targets.dtype.type in (np.float32, np.float64) and targets.size)
            and counter.dtype == np.int64 and counter.shape == (1,) and correct.dtype == np.int64
            and correct.ndim == 1):
        return NotImplemented
    launch_count_correct(_dev(logits), _dev(xp.reshape(targets, (targets.shape[0], -1))), targets.ndim == 2,
                         _dev(counter), _dev(correct), _stream())
