"""Numba CPU kernels: the reference ops fused into single passes over NumPy arrays.

Each public function has the signature of its twin in ``reference.py`` and the same side effects, and
returns ``NotImplemented`` for what it does not handle (anything but C-contiguous float32/float64 NumPy
arrays): the registry (``__init__.py``) then runs the reference. The maths is not here: activations come
from ``activations.py`` and update rules from ``elementwise.py``, compiled inline into loops written once
each and compiled twice, serial and parallel (``_twins``); the parallel ones run above
``PARALLEL_MIN_ELEMENTS`` (measured by ``bench/cutover.py``). Activation kernels are compiled per
activation with a constant code, so each loop is branch-free and vectorises. float32 loops use the
vectorisable ``fast_*`` functions below where libm would keep them scalar. Compiled code is cached on
disk (``cache=True``), so a second process pays no compile time.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import types
from pathlib import Path

# Numba's OpenMP workers and OpenBLAS's threads take turns on the same cores every training step; with
# OpenMP's default active waiting they spin against each other (8.7 ms vs 1.4 ms per step measured on 2
# cores). Passive waiting, unless the user chose otherwise; read when the OpenMP runtime first starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402
from numba.extending import overload  # noqa: E402
from numba.np.unsafe.ndarray import to_fixed_tuple  # noqa: E402

from .activations import CODES  # noqa: E402
from .elementwise import argmax_row, bce_element, record_step_scalars  # noqa: E402
from .jit import act_derivative, act_forward, rule_element  # noqa: E402
from .optimizers import CODES as RULE_CODES  # noqa: E402
from .optimizers import NAMES, RULES, SKIP  # noqa: E402
from .reference import inv_std_shape  # noqa: E402
from .scalar_math import fast_exp, fast_expm1, fast_log1p, fast_tanh, typed  # noqa: E402

# No nnan/ninf: -inf logits and NaN divergence must propagate exactly as in the reference.
_FAST = {"contract", "arcp", "reassoc", "nsz"}
_JIT = dict(cache=True, error_model="numpy", fastmath=_FAST)
_INLINE = dict(_JIT, inline="always")
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_TINY = {dtype: np.finfo(dtype).tiny for dtype in (_F32, _F64)}  # the smallest normal number

# Serial below this many elements: with passive waiting (below) a parallel launch costs ~40 µs to
# wake the workers, so it pays from about 1e6 elements on (bench/cutover.py, bench/RESULTS.md).
PARALLEL_MIN_ELEMENTS = 1 << 20


# -- a vectorisable exp ------------------------------------------------------------------------
@overload(fast_exp, target="cpu", jit_options=_INLINE)
def _fast_exp_impl(x):
    """float32: range reduction + degree-7 polynomial + exponent bits (LLVM vectorises it; libm's
    exp does not vectorise without SVML); max relative error ~1e-7. float64: libm exp, exact."""
    if isinstance(x, numba.types.Float) and x.bitwidth == 32:
        def impl(x):
            if x != x:
                return x
            if x > np.float32(88.0):
                return np.float32(np.inf)
            if x < np.float32(-87.0):  # underflow (denormals are flushed to 0)
                return np.float32(0.0)
            # k = round(x / ln 2) by truncation toward zero of y +- 0.5 (math.floor does not vectorise as well)
            y = x * np.float32(1.4426950408889634)
            ki = np.int32(y + (np.float32(0.5) if y >= np.float32(0.0) else np.float32(-0.5)))
            k = np.float32(ki)
            r = x - k * np.float32(0.693145751953125) - k * np.float32(1.428606765330187e-06)
            p = np.float32(1.0 / 5040)
            p = p * r + np.float32(1.0 / 720)
            p = p * r + np.float32(1.0 / 120)
            p = p * r + np.float32(1.0 / 24)
            p = p * r + np.float32(1.0 / 6)
            p = p * r + np.float32(0.5)
            p = p * r + np.float32(1.0)
            p = p * r + np.float32(1.0)
            return p * np.int32((ki + np.int32(127)) << np.int32(23)).view(np.float32)
        return impl
    return lambda x: math.exp(x)


@overload(fast_log1p, target="cpu", jit_options=_INLINE)
def _fast_log1p_impl(x):
    """float32, for x >= 0: log(1 + x) from the exponent bits and an atanh series on the mantissa in
    [sqrt(1/2), sqrt(2)) (vectorisable; absolute error ~1e-7). float64: libm log1p, exact."""
    if isinstance(x, numba.types.Float) and x.bitwidth == 32:
        def impl(x):
            y = np.float32(1.0) + x
            bits = np.float32(y).view(np.int32)
            k = ((bits >> np.int32(23)) & np.int32(0xFF)) - np.int32(127)
            m = np.int32((bits & np.int32(0x7FFFFF)) | np.int32(0x3F800000)).view(np.float32)
            if m > np.float32(1.4142135):
                m = m * np.float32(0.5)
                k = k + np.int32(1)
            f = (m - np.float32(1.0)) / (m + np.float32(1.0))
            f2 = f * f
            p = np.float32(1.0 / 9)
            p = p * f2 + np.float32(1.0 / 7)
            p = p * f2 + np.float32(1.0 / 5)
            p = p * f2 + np.float32(1.0 / 3)
            p = p * f2 + np.float32(1.0)
            return np.float32(2.0) * f * p + np.float32(k) * np.float32(0.6931471805599453)
        return impl
    return lambda x: math.log1p(x)


@overload(fast_expm1, target="cpu", jit_options=_INLINE)
def _fast_expm1_impl(x):
    """float32: a Taylor polynomial near 0 (where exp(x) - 1 would cancel), fast_exp(x) - 1 elsewhere;
    relative error ~1e-6. float64: libm expm1, exact."""
    if isinstance(x, numba.types.Float) and x.bitwidth == 32:
        def impl(x):
            p = np.float32(1.0 / 120)
            p = p * x + np.float32(1.0 / 24)
            p = p * x + np.float32(1.0 / 6)
            p = p * x + np.float32(0.5)
            p = p * x * x + x
            return p if abs(x) < np.float32(0.125) else fast_exp(x) - np.float32(1.0)
        return impl
    return lambda x: math.expm1(x)


@overload(fast_tanh, target="cpu", jit_options=_INLINE)
def _fast_tanh_impl(x):
    """float32: a 13/6 rational approximation on [-7.9, 7.9] (as Eigen's fast tanh; one division, no exp),
    exact to float32 rounding, saturating beyond. float64: libm tanh."""
    if isinstance(x, numba.types.Float) and x.bitwidth == 32:
        def impl(x):
            c = np.float32(7.90531110763549805)
            v = -c if x < -c else (c if x > c else x)
            v2 = v * v
            p = v2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
            p = v2 * p + np.float32(-8.60467152213735e-11)
            p = v2 * p + np.float32(5.12229709037114e-08)
            p = v2 * p + np.float32(1.48572235717979e-05)
            p = v2 * p + np.float32(6.37261928875436e-04)
            p = v2 * p + np.float32(4.89352455891786e-03)
            q = v2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
            q = v2 * q + np.float32(2.26843463243900e-03)
            q = v2 * q + np.float32(4.89352518554385e-03)
            return x if abs(x) < np.float32(0.0004) else v * p / q
        return impl
    return lambda x: math.tanh(x)


# -- compiling one body twice, and once per activation -------------------------------------------------
# Numba's disk cache tells functions apart by qualified name and bytecode, not by ``parallel`` or by the
# element functions inlined from other files: each variant gets its own name, which carries a digest of
# those files so that editing the maths recompiles instead of loading a stale kernel.
_MATHS_DIGEST = hashlib.sha256(b"".join(
    (Path(__file__).parent / f).read_bytes()
    for f in ("activations.py", "elementwise.py", "optimizers.py", "jit.py", "scalar_math.py"))).hexdigest()[:10]


def _renamed(fn, name):
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = f"{name}_{_MATHS_DIGEST}"
    return copy


def _twins(fn):
    """``(serial, parallel)`` compilations of one body written with ``prange`` (a ``range`` when serial)."""
    name = fn.__name__
    return (njit(**_JIT)(_renamed(fn, f"{name}_serial")),
            njit(parallel=True, **_JIT)(_renamed(fn, f"{name}_parallel")))


def _per_activation(factory):
    """``{name: (serial, parallel)}``: ``factory(code)`` returns a body whose closure holds the constant code."""
    return {name: _twins(_renamed(factory(code), f"{factory.__name__}_{name}")) for name, code in CODES.items()}


def _pick(twins, size):
    return twins[size >= PARALLEL_MIN_ELEMENTS]


def _bands(size):
    """Contiguous bands of work: one per thread when parallel, else one."""
    return numba.get_num_threads() if size >= PARALLEL_MIN_ELEMENTS else 1


# -- support checks ----------------------------------------------------------------------------
def _fusable(*arrays) -> bool:
    """True when every array given (None: not given) is a C-contiguous NumPy array of the first one's float dtype."""
    first = arrays[0]
    if type(first) is not np.ndarray:
        return False
    dtype = first.dtype
    if dtype != _F32 and dtype != _F64:
        return False
    for a in arrays:  # a plain loop: this runs on every call, so it is kept cheap
        if a is not None and (type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous):
            return False
    return True


def _given(*arrays):
    return tuple(a for a in arrays if a is not None)


@functools.lru_cache(maxsize=64)
def _scalar(dtype, value):
    """``value`` as a scalar of ``dtype``, cached: the conversion costs ~0.5 µs, a lookup ~0.1 µs."""
    return dtype.type(value)


@functools.lru_cache(maxsize=64)
def _zeros(size, dtype):
    """A zero bias for ``bias_act`` without one (the kernel only reads it), made once per width."""
    return np.zeros(size, dtype)


_THREAD = threading.local()


def _row_scratch(n):
    """A float64 vector of length ``n`` for a kernel's per-row results, kept per thread and grown as needed:
    a training step then allocates nothing here (the kernel writes every slot before it reads one)."""
    rows = getattr(_THREAD, "rows", None)
    if rows is None or rows.shape[0] < n:
        rows = _THREAD.rows = np.empty(n)
    return rows[:n]


def _labels_ok(labels, n) -> bool:
    return (isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.shape[0] == n
            and labels.dtype.kind in "iu" and labels.flags.c_contiguous)


# -- softmax cross-entropy ---------------------------------------------------------------------
@njit(**_INLINE)
def _xent_row(z, y, smoothing, inv_n, grad, i):
    c = z.shape[1]
    m = z[i, 0]
    total = 0.0
    for j in range(c):
        m = max(m, z[i, j])
        total += z[i, j]
    zy = z[i, y]  # read before grad (which may alias z) is written
    s = 0.0
    for j in range(c):
        e = fast_exp(z[i, j] - m)
        grad[i, j] = e
        s += e
    lse = m + math.log(s)
    loss = lse - (1.0 - smoothing) * zy
    if smoothing > 0:
        loss -= smoothing / c * total
    scale = inv_n / s
    off = smoothing / c * inv_n
    for j in range(c):
        grad[i, j] = grad[i, j] * scale - off
    grad[i, y] -= (1.0 - smoothing) * inv_n
    return loss


@njit(**_JIT)
def _labels_in_range(labels, c):
    for y in labels:
        if y < 0 or y >= c:
            return False
    return True


def _xent(z, labels, smoothing, grad, rows):
    n = z.shape[0]
    if not _labels_in_range(labels, z.shape[1]):
        return np.nan
    for i in prange(n):
        rows[i] = _xent_row(z, labels[i], smoothing, 1.0 / n, grad, i)
    total = 0.0
    for i in range(n):  # summed in row order: the same for any thread count
        total += rows[i]
    return total / n


_XENT = _twins(_xent)


def softmax_cross_entropy(xp, logits, labels, label_smoothing=0.0, out=None):
    call = bind_softmax_cross_entropy(xp, logits, labels, label_smoothing,
                                      np.empty_like(logits) if out is None and type(logits) is np.ndarray else out)
    return NotImplemented if call is None else call()


def bind_softmax_cross_entropy(xp, logits, labels, label_smoothing=0.0, out=None):
    # the loss goes into a 0-d array of its own, the same one at every call
    if not (out is not None and _fusable(logits, out) and logits.ndim == 2
            and _labels_ok(labels, logits.shape[0]) and out.shape == logits.shape):
        return None
    kernel, smoothing, rows = _pick(_XENT, logits.size), float(label_smoothing), _row_scratch(logits.shape[0])
    value = np.empty((), logits.dtype)

    def call():
        loss = kernel(logits, labels, smoothing, out, rows)
        if loss != loss and not _labels_in_range(labels, logits.shape[1]):  # checked in the kernel, reported here
            raise ValueError(f"labels must be in [0, {logits.shape[1] - 1}]")
        value[()] = loss
        return value, out
    return call


# -- binary cross-entropy with logits ----------------------------------------------------------
@njit(**_JIT)
def _bce(z, t, grad, inv):
    total = 0.0  # accumulated in float64 whatever the data's dtype
    for i in range(z.size):
        loss, d = bce_element(z[i], t[i])
        total += loss
        grad[i] = d * inv
    return total / z.size


def sigmoid_binary_cross_entropy(xp, logits, targets, out=None):
    if not (_fusable(logits, targets, out)
            and targets.shape == logits.shape and (out is None or out.shape == logits.shape)):
        return NotImplemented
    grad = np.empty_like(logits) if out is None else out
    loss = _bce(logits.reshape(-1), targets.reshape(-1), grad.reshape(-1), logits.dtype.type(1.0 / logits.size))
    return np.asarray(loss, dtype=logits.dtype), grad


# -- activations -------------------------------------------------------------------------------
def bias_act_kernel(code):
    def kernel(z, b, alpha):
        for i in prange(z.shape[0]):
            for j in range(z.shape[1]):
                z[i, j] = act_forward(z[i, j] + b[j], code, alpha)
    return kernel


# ``in_place`` (out is dy) is a separate branch, not just out=dy: LLVM cannot prove that two array arguments
# are the same array, so its overlap check would send an aliased loop to the scalar fallback (3x slower).
def act_backward_kernel(code):
    def kernel(dy, saved, alpha, out, in_place, bands):
        n = dy.size
        for t in prange(bands):
            # Slices, then indices from 0: an index that might be negative gets a wrap-around check that
            # stops LLVM from vectorising the loop (5x slower measured).
            start, stop = t * n // bands, (t + 1) * n // bands
            d, w, o = dy[start:stop], saved[start:stop], out[start:stop]
            if in_place:
                for i in range(d.size):
                    d[i] = act_derivative(d[i], w[i], code, alpha)
            else:
                for i in range(d.size):
                    o[i] = act_derivative(d[i], w[i], code, alpha)
    return kernel


# With the bias gradient: rows of a 2-D dy, each element's dz written and added to its column's sum in the
# same pass. Blocks of _SUM_BLOCK rows are summed in the data's dtype (SIMD-wide), the blocks' sums in
# float64: as accurate as the reference's pairwise sum, and ~20% faster than float64 throughout. One band
# of rows and one partial sum per thread, added in a fixed order: deterministic for a fixed thread count.
_SUM_BLOCK = 16


def act_backward_bias_kernel(code):
    def kernel(dy, saved, alpha, out, in_place, bias_grad, bands):
        n, cols = dy.shape
        acc = np.zeros((bands, cols), np.float64)
        for t in prange(bands):
            block = np.empty(cols, dy.dtype)
            stop = (t + 1) * n // bands
            for first in range(t * n // bands, stop, _SUM_BLOCK):
                block[:] = 0
                for i in range(first, min(first + _SUM_BLOCK, stop)):
                    if in_place:
                        for j in range(cols):
                            d = act_derivative(dy[i, j], saved[i, j], code, alpha)
                            dy[i, j] = d
                            block[j] += d
                    else:
                        for j in range(cols):
                            d = act_derivative(dy[i, j], saved[i, j], code, alpha)
                            out[i, j] = d
                            block[j] += d
                for j in range(cols):
                    acc[t, j] += block[j]
        for j in range(cols):
            total = acc[0, j]
            for t in range(1, bands):
                total += acc[t, j]
            bias_grad[j] = total
    return kernel


_BIAS_ACT = _per_activation(bias_act_kernel)
_ACT_BACKWARD = _per_activation(act_backward_kernel)
_ACT_BACKWARD_BIAS = _per_activation(act_backward_bias_kernel)


def _bias_act_call(z, b, act, alpha):
    """(kernel, its arguments) for ``bias_act``, or None where these arrays are not this module's."""
    if not (act in CODES and _fusable(z, b) and z.flags.writeable and z.size
            and (b is None or (z.ndim == 2 and b.shape == (z.shape[1],)))):
        return None
    z2 = z if b is not None else z.reshape(-1, z.shape[-1]) if z.ndim > 1 else z.reshape(1, -1)
    return _pick(_BIAS_ACT[act], z.size), (z2, _zeros(z2.shape[1], z.dtype) if b is None else b,
                                           _scalar(z.dtype, alpha))


def bias_act(xp, z, b, act, alpha=0.0):
    call = _bias_act_call(z, b, act, alpha)
    if call is None:
        return NotImplemented
    kernel, args = call
    kernel(*args)
    return z


def bind_bias_act(xp, z, b, act, alpha=0.0):
    call = _bias_act_call(z, b, act, alpha)
    return None if call is None else functools.partial(call[0], *call[1])


def _act_backward_call(dy, saved, act, alpha, out, bias_grad):
    """(kernel, its arguments) for ``act_backward`` writing into ``out`` (given), or None where these arrays are
    not this module's."""
    if not (act in CODES and _fusable(dy, saved, out, bias_grad) and dy.shape == saved.shape
            and out.shape == dy.shape and out.flags.writeable
            and (bias_grad is None or (dy.ndim == 2 and bias_grad.shape == (dy.shape[1],)
                                       and bias_grad.flags.writeable))):
        return None
    a, in_place, bands = _scalar(dy.dtype, alpha), out is dy, _bands(dy.size)
    if bias_grad is not None:
        return _pick(_ACT_BACKWARD_BIAS[act], dy.size), (dy, saved, a, out, in_place, bias_grad, bands)
    return _pick(_ACT_BACKWARD[act], dy.size), (dy.reshape(-1), saved.reshape(-1), a, out.reshape(-1), in_place,
                                                 bands)


def act_backward(xp, dy, saved, act, alpha=0.0, out=None, bias_grad=None):
    if type(dy) is not np.ndarray:
        return NotImplemented
    result = np.empty_like(dy) if out is None else out
    call = _act_backward_call(dy, saved, act, alpha, result, bias_grad)
    if call is None:
        return NotImplemented
    kernel, args = call
    kernel(*args)
    return result


def bind_act_backward(xp, dy, saved, act, alpha=0.0, out=None, bias_grad=None):
    # Not where the bias gradient's bands (one per thread, summed in order) follow the thread count, which may
    # change between epochs: bound, a call would keep the count of the step that bound it.
    call = None if out is None or dy.size >= PARALLEL_MIN_ELEMENTS else _act_backward_call(
        dy, saved, act, alpha, out, bias_grad)
    return None if call is None else functools.partial(call[0], *call[1])


# -- penalties ---------------------------------------------------------------------------------
# The reference's roundings, each product rounded before the sum: compiled without fast-math, so that nothing
# is contracted into a fused multiply-add (the same bits as NumPy's separate passes).
def _l2_penalty(w, g, lam, squares):
    for i in prange(w.size):
        x = w[i]
        g[i] = g[i] + x * lam
        squares[i] = x * x


_L2_PENALTY = tuple(njit(cache=True, error_model="numpy", parallel=parallel)(_renamed(_l2_penalty, name))
                    for parallel, name in ((False, "l2_penalty_serial"), (True, "l2_penalty_parallel")))


def l2_penalty(xp, w, g, lam, scratch=None):
    if not (_fusable(w, g, scratch) and g.shape == w.shape and g.flags.writeable
            and (scratch is None or (scratch.shape == w.shape and scratch.flags.writeable))):
        return NotImplemented
    squares = np.empty_like(w) if scratch is None else scratch
    _pick(_L2_PENALTY, w.size)(w.reshape(-1), g.reshape(-1), _scalar(w.dtype, lam), squares.reshape(-1))
    return squares


# -- normalisation layers ----------------------------------------------------------------------
# Sums in float64 (each feature's over the batch in one vectorised pass down the rows, each sample's over its
# features with reassociation), two passes for the variance: a few passes over the batch where the reference makes
# about fifteen array operations forward and twelve backward.
@njit(**_JIT)
def _norm_forward_columns(x, gamma, beta, eps, y, xhat, inv_std, running_mean, running_var, momentum, update):
    n, f = x.shape
    mean, var = np.zeros(f), np.zeros(f)
    for i in range(n):
        for j in range(f):
            mean[j] += x[i, j]
    for j in range(f):
        mean[j] /= n
    for i in range(n):
        for j in range(f):
            d = x[i, j] - mean[j]
            var[j] += d * d
    for j in range(f):
        var[j] /= n
        inv_std[j] = 1.0 / np.sqrt(var[j] + eps)
        if update:  # the running variance is unbiased, as torch's
            running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * mean[j]
            running_var[j] = (1.0 - momentum) * running_var[j] + momentum * var[j] * (n / (n - 1))
    for i in range(n):
        for j in range(f):
            h = (x[i, j] - mean[j]) * inv_std[j]
            xhat[i, j] = h
            y[i, j] = h * gamma[j] + beta[j]


@njit(**_JIT)
def _norm_forward_rows(x, gamma, beta, eps, y, xhat, inv_std):
    n, f = x.shape
    for i in range(n):
        total = 0.0
        for j in range(f):
            total += x[i, j]
        mean, squares = total / f, 0.0
        for j in range(f):
            d = x[i, j] - mean
            squares += d * d
        inv_std[i, 0] = 1.0 / np.sqrt(squares / f + eps)
        for j in range(f):
            h = (x[i, j] - mean) * inv_std[i, 0]
            xhat[i, j] = h
            y[i, j] = h * gamma[j] + beta[j]


@njit(**_JIT)
def _norm_backward(dy, xhat, inv_std, gamma, axis, dgamma, dbeta, dx, input_grad):
    n, f = dy.shape
    g_sum, b_sum = np.zeros(f), np.zeros(f)  # dgamma's and dbeta's column sums
    for i in range(n):
        for j in range(f):
            b_sum[j] += dy[i, j]
            g_sum[j] += dy[i, j] * xhat[i, j]
    for j in range(f):
        dgamma[j] = g_sum[j]
        dbeta[j] = b_sum[j]
    if not input_grad:
        return
    # dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma, means along `axis`
    for i in range(n):
        if axis == 0:
            for j in range(f):
                dx[i, j] = inv_std[0, j] * gamma[j] * (dy[i, j] - b_sum[j] / n - xhat[i, j] * (g_sum[j] / n))
        else:
            mean_d, mean_dx = 0.0, 0.0
            for j in range(f):
                d = dy[i, j] * gamma[j]
                mean_d += d
                mean_dx += d * xhat[i, j]
            mean_d, mean_dx = mean_d / f, mean_dx / f
            for j in range(f):
                dx[i, j] = inv_std[i, 0] * (dy[i, j] * gamma[j] - mean_d - xhat[i, j] * mean_dx)


def _norm_shapes_fit(x, gamma, axis, inv_std):
    return (x.ndim == 2 and axis in (0, 1) and gamma.shape == (x.shape[1],)
            and inv_std.shape == inv_std_shape(x.shape, axis))


def norm_forward(xp, x, gamma, beta, eps, axis, running=None, out=None):
    if out is None and type(x) is np.ndarray and x.ndim == 2:
        out = (np.empty_like(x), np.empty_like(x), np.empty(inv_std_shape(x.shape, axis), x.dtype))
    call = None if out is None else bind_norm_forward(xp, x, gamma, beta, eps, axis, running, out)
    return NotImplemented if call is None else call()


def bind_norm_forward(xp, x, gamma, beta, eps, axis, running=None, out=None):
    if out is None:
        return None
    y, xhat, inv_std = out
    rm, rv, momentum = running if running is not None else (None, None, 0.0)
    if not (_fusable(x, gamma, beta, y, xhat, inv_std, rm, rv) and _norm_shapes_fit(x, gamma, axis, inv_std)
            and y.shape == xhat.shape == x.shape
            and (running is None or (axis == 0 and rm.shape == rv.shape == gamma.shape and x.shape[0] > 1))):
        return None
    if axis == 1:
        kernel, args = _norm_forward_rows, (x, gamma, beta, float(eps), y, xhat, inv_std)
    else:  # without running statistics gamma stands in for them: the kernel does not touch it
        stats = (gamma, gamma) if running is None else (rm, rv)
        kernel, args = _norm_forward_columns, (x, gamma, beta, float(eps), y, xhat, inv_std, *stats, float(momentum),
                                               running is not None)

    def call():
        kernel(*args)
        return out
    return call


def norm_backward(xp, dy, xhat, inv_std, gamma, axis, dgamma, dbeta, input_grad=True, out=None):
    if input_grad and out is None and type(dy) is np.ndarray:
        out = np.empty_like(dy)
    call = bind_norm_backward(xp, dy, xhat, inv_std, gamma, axis, dgamma, dbeta, input_grad, out)
    return NotImplemented if call is None else call()


def bind_norm_backward(xp, dy, xhat, inv_std, gamma, axis, dgamma, dbeta, input_grad=True, out=None):
    if not (_fusable(dy, xhat, inv_std, gamma, dgamma, dbeta, out) and _norm_shapes_fit(dy, gamma, axis, inv_std)
            and xhat.shape == dy.shape and dgamma.shape == dbeta.shape == gamma.shape
            and (out.shape == dy.shape if input_grad else out is None)):
        return None
    # inv_std as a row (axis 0) or a column (axis 1): one 2-D type for both; dy stands in for an output not wanted
    args = (dy, xhat, inv_std.reshape(1, -1) if axis == 0 else inv_std, gamma, axis, dgamma, dbeta,
            dy if out is None else out, bool(input_grad))

    def call():
        _norm_backward(*args)
        return out
    return call


# -- optimizer updates -------------------------------------------------------------------------
# One loop per rule of the optimizer table, its code a compile-time constant (as for the activations). The
# step's scalars arrive as the record ``hp`` in the parameters' dtype (float32 updates stay in float32 SIMD
# lanes) and are read once into a tuple before the loop; a set ``skip`` slot leaves everything as is. A state
# the rule does not have is ``g`` (read, never written).
# A state below the dtype's smallest normal number (``tiny``) is stored as zero, where the rule says so
# (``flushes_subnormal_states``: the parameter a subnormal state moves is unchanged). A state that decays while its
# gradient stays zero (Adam's first moment of a dead unit's weights: x0.9 a step) becomes subnormal within a few
# hundred steps, and every operation on a subnormal number costs an x86 core a microcode assist: 2.7% subnormal
# first moments made the default model's Adam update 963 µs instead of 334 after three epochs (bench/RESULTS.md).
# XLA's CPU code runs with subnormal numbers flushed to zero throughout.
def _update_kernel(code):
    rule = RULES[NAMES[code]]
    n_fields, n_state, flush = len(rule.record), len(rule.state), rule.flushes_subnormal_states

    def update(p, g, s0, s1, hp, tiny):
        if hp[SKIP] != 0:
            return
        h = to_fixed_tuple(hp, n_fields)
        for i in prange(p.size):
            p[i], a, b = rule_element(code, p[i], g[i], s0[i], s1[i], h)
            if n_state >= 1:
                s0[i] = typed(0.0, a) if flush and abs(a) < tiny else a  # NaN stays NaN
            if n_state >= 2:
                s1[i] = typed(0.0, b) if flush and abs(b) < tiny else b
    return update


_UPDATE = {name: _twins(_renamed(_update_kernel(code), f"update_{name}")) for name, code in RULE_CODES.items()}


def _flat_ok(p, *others) -> bool:
    return _fusable(p, *others) and p.ndim == 1 and p.flags.writeable and all(o.shape == p.shape for o in others)


def optimizer_update(xp, rule, p, g, s0, s1, hp):
    call = bind_optimizer_update(xp, rule, p, g, s0, s1, hp)
    return NotImplemented if call is None else call()


def bind_optimizer_update(xp, rule, p, g, s0, s1, hp):
    states = _given(s0, s1)
    if not (rule in _UPDATE and len(states) == len(RULES[rule].state) and _flat_ok(p, g, *states)
            and _fusable(p, hp) and hp.shape == (len(RULES[rule].record),)):
        return None
    return functools.partial(_pick(_UPDATE[rule], p.size), p, g, g if s0 is None else s0, g if s1 is None else s1,
                             hp, _TINY[p.dtype])


# -- a training step's bookkeeping -------------------------------------------------------------
@njit(**_JIT)
def _positions(order, counter, first, batch_size, rows, idx):
    start = counter[0] * batch_size + first
    if start < 0 or start + idx.shape[0] > order.shape[0]:
        return False
    for i in range(idx.shape[0]):
        r = order[start + i]
        if r < 0 or r >= rows:
            return False
        idx[i] = r
    return True


def gather_batch(xp, X, y, order, counter, batch_size: int, first: int, n: int, idx=None, xb=None, yb=None):
    call = bind_gather_batch(xp, X, y, order, counter, batch_size, first, n, idx, xb, yb)
    return NotImplemented if call is None else call()


def bind_gather_batch(xp, X, y, order, counter, batch_size: int, first: int, n: int, idx=None, xb=None, yb=None):
    arrays = (X, y, order, counter, idx, xb, yb)
    if not (all(type(a) is np.ndarray for a in arrays) and order.flags.c_contiguous and X.dtype in (_F32, _F64)
            and xb.dtype == X.dtype and yb.dtype == y.dtype and order.dtype == counter.dtype == idx.dtype == np.int64
            and order.ndim == 1 and counter.shape == (1,) and idx.shape == (n,) and xb.shape == (n, *X.shape[1:])
            and yb.shape == (n, *y.shape[1:]) and X.ndim >= 1 and X.shape[0] == y.shape[0]):
        return None

    def call():
        if not _positions(order, counter, first, batch_size, X.shape[0], idx):
            raise IndexError(f"the step's samples (step {int(counter[0])}) are outside the epoch's order or the data")
        # NumPy's take copies the rows faster than a compiled loop (memcpy per row); the indices are checked above
        np.take(X, idx, axis=0, out=xb, mode="clip")
        np.take(y, idx, axis=0, out=yb, mode="clip")
        return idx, xb, yb
    return call


_argmax_row = njit(**_JIT)(argmax_row)
_record_step = njit(**_JIT)(record_step_scalars)


def _count_correct(logits, targets, one_hot, counter, correct):
    c = counter[0]
    if c < 0 or c >= correct.shape[0]:
        return False
    hits = 0
    for i in range(logits.shape[0]):
        label = _argmax_row(targets, i) if one_hot else targets[i, 0]
        if _argmax_row(logits, i) == label:
            hits += 1
    correct[c] = hits
    return True


# renamed with the element maths' digest, as the loops above: it links elementwise.py's argmax_row
_count_correct = njit(**_JIT)(_renamed(_count_correct, "count_correct"))


def count_correct(xp, logits, targets, counter, correct):
    call = bind_count_correct(xp, logits, targets, counter, correct)
    return NotImplemented if call is None else call()


def bind_count_correct(xp, logits, targets, counter, correct):
    if not (_fusable(logits) and logits.ndim == 2 and logits.shape[1] > 0 and type(targets) is np.ndarray
            and targets.flags.c_contiguous and targets.shape[0] == logits.shape[0] and targets.ndim in (1, 2)
            and (targets.dtype.kind in "iu" if targets.ndim == 1 else targets.dtype in (_F32, _F64) and targets.size)
            and type(counter) is np.ndarray and counter.dtype == np.int64 and counter.shape == (1,)
            and type(correct) is np.ndarray and correct.dtype == np.int64 and correct.ndim == 1):
        return None
    rows, one_hot = targets.reshape(targets.shape[0], -1), targets.ndim == 2

    def call():
        if not _count_correct(logits, rows, one_hot, counter, correct):
            raise IndexError(f"the step counter ({int(counter[0])}) is outside the epoch's {correct.shape[0]} steps")
    return call


_NO_FLAGS = np.zeros(1, np.int8)  # a stand-in the kernel never touches


def record_step(xp, value, counter, losses, record=None, records=None, flags=None, bad=None, grad_sum=None):
    if isinstance(value, np.generic):  # a loss with a penalty added is a NumPy scalar
        value = np.asarray(value)
    if isinstance(grad_sum, np.generic):  # as is NumPy's sum of the gradient
        grad_sum = np.asarray(grad_sum)
    call = bind_record_step(xp, value, counter, losses, record, records, flags, bad, grad_sum)
    return NotImplemented if call is None else call()


def bind_record_step(xp, value, counter, losses, record=None, records=None, flags=None, bad=None, grad_sum=None):
    check, copy = flags is not None, records is not None
    if not (_fusable(losses, value, record, records, bad, grad_sum) and losses.ndim == 1 and value.ndim == 0
            and type(counter) is np.ndarray and counter.dtype == np.int64 and counter.shape == (1,)
            and (not check or (type(flags) is np.ndarray and flags.dtype == np.int8 and flags.shape == losses.shape
                               and bad is not None and bad.ndim == 0))
            and (not copy or (record is not None and records.ndim == 2 and record.shape == records.shape[1:]
                              and record.shape[0] > SKIP and records.shape[0] >= losses.shape[0]))  # unchecked there
            and (grad_sum is None or grad_sum.ndim == 0)):
        return None
    one = value.reshape(1)  # it stands in for what is not given: the kernel only reads it
    args = (one, counter, losses, record if copy else one, records if copy else one.reshape(1, 1),
            flags if check else _NO_FLAGS, bad.reshape(1) if check else one,
            one if grad_sum is None else grad_sum.reshape(1), copy, check, grad_sum is not None)

    def call():
        if not _record_step(*args):
            raise IndexError(f"the step counter ({int(counter[0])}) is outside the epoch's {losses.shape[0]} steps")
    return call
