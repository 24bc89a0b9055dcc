"""Numba CPU kernels: the reference ops fused into single passes over NumPy arrays.

Each public function has exactly the signature and side effects of its twin in ``reference.py``
and falls back to it for anything but C-contiguous float32/float64 NumPy arrays. The per-element
maths lives in ``elementwise.py`` (shared with the CUDA kernels) and is inlined here into serial and
parallel loops; the parallel ones run above ``PARALLEL_MIN_ELEMENTS`` (measured by ``bench/cutover.py``).
float32 loops use the vectorisable ``fast_*`` functions below where libm would keep them scalar.
Compiled code is cached on disk (``cache=True``), so a second process pays no compile time.
"""
from __future__ import annotations

import functools
import math
import os

# Numba's OpenMP workers and OpenBLAS's threads take turns on the same cores every training step; with
# OpenMP's default active waiting they spin against each other (8.7 ms vs 1.4 ms per step measured on 2
# cores). Passive waiting, unless the user chose otherwise; read when the OpenMP runtime first starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402
from numba.extending import overload  # noqa: E402

from . import reference  # noqa: E402
from .elementwise import (ACT_CODES, ELU, IDENTITY, LEAKY_RELU, RELU, SELU, SELU_ALPHA,  # noqa: E402
                          SELU_SCALE, SIGMOID, TANH, _act_elem, _act_grad_elem, _adam_elem, _rmsprop_elem,
                          _sgd_elem)

# No nnan/ninf: -inf logits and NaN divergence must propagate exactly as in the reference.
_FAST = {"contract", "arcp", "reassoc", "nsz"}
_JIT = dict(cache=True, error_model="numpy", fastmath=_FAST)
_INLINE = dict(_JIT, inline="always")
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)

# Serial below this many elements: with passive waiting (below) a parallel launch costs ~40 µs to
# wake the workers, so it pays from about 1e6 elements on (bench/cutover.py, bench/RESULTS.md).
PARALLEL_MIN_ELEMENTS = 1 << 20

_ACT_CODES = ACT_CODES


# -- a vectorisable exp ------------------------------------------------------------------------
def fast_exp(x):  # pragma: no cover - replaced by the overload inside compiled code
    return math.exp(x)


@overload(fast_exp, jit_options=_INLINE)
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


def fast_log1p(x):  # pragma: no cover - replaced by the overload inside compiled code
    return math.log1p(x)


@overload(fast_log1p, jit_options=_INLINE)
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


def fast_expm1(x):  # pragma: no cover - replaced by the overload inside compiled code
    return math.expm1(x)


@overload(fast_expm1, jit_options=_INLINE)
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


def fast_tanh(x):  # pragma: no cover - replaced by the overload inside compiled code
    return math.tanh(x)


@overload(fast_tanh, jit_options=_INLINE)
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


# -- support checks ----------------------------------------------------------------------------
def _fusable(*arrays) -> bool:
    """True when every array is a C-contiguous NumPy array of the first one's float dtype."""
    first = arrays[0]
    if type(first) is not np.ndarray:
        return False
    dtype = first.dtype
    if dtype != _F32 and dtype != _F64:
        return False
    for a in arrays:  # a plain loop: this runs on every call, so it is kept cheap
        if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


@functools.lru_cache(maxsize=64)
def _scalar(dtype, value):
    """``value`` as a scalar of ``dtype``, cached: the conversion costs ~0.5 µs, a lookup ~0.1 µs."""
    return dtype.type(value)


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


@njit(**_JIT)
def _xent_serial(z, labels, smoothing, grad):
    n = z.shape[0]
    if not _labels_in_range(labels, z.shape[1]):
        return np.nan
    total = 0.0
    for i in range(n):
        total += _xent_row(z, labels[i], smoothing, 1.0 / n, grad, i)
    return total / n


@njit(parallel=True, **_JIT)
def _xent_parallel(z, labels, smoothing, grad):
    n = z.shape[0]
    if not _labels_in_range(labels, z.shape[1]):
        return np.nan
    rows = np.empty(n)
    for i in prange(n):
        rows[i] = _xent_row(z, labels[i], smoothing, 1.0 / n, grad, i)
    return rows.sum() / n  # summed in row order: the same for any thread count


def softmax_cross_entropy(xp, logits, labels, label_smoothing=0.0, out=None):
    if not (_fusable(logits, *(() if out is None else (out,))) and logits.ndim == 2
            and _labels_ok(labels, logits.shape[0]) and (out is None or out.shape == logits.shape)):
        return reference.softmax_cross_entropy(xp, logits, labels, label_smoothing, out)
    grad = np.empty_like(logits) if out is None else out
    kernel = _xent_parallel if logits.size >= PARALLEL_MIN_ELEMENTS else _xent_serial
    loss = kernel(logits, labels, float(label_smoothing), grad)
    if loss != loss and not _labels_in_range(labels, logits.shape[1]):  # checked in the kernel, reported here
        raise ValueError(f"labels must be in [0, {logits.shape[1] - 1}]")
    return np.asarray(loss, dtype=logits.dtype), grad


# -- binary cross-entropy with logits ----------------------------------------------------------
@njit(**_JIT)
def _bce(z, t, grad, one):
    # ``one`` has the arrays' dtype, so float32 stays float32 (the sum is still accumulated in float64)
    zero = one - one
    inv = one / z.size
    total = 0.0
    for i in range(z.size):
        x = z[i]
        e = fast_exp(-abs(x))
        total += (x if x > zero else zero) - x * t[i] + fast_log1p(e)
        sig = one / (one + e) if x >= zero else e / (one + e)
        grad[i] = (sig - t[i]) * inv
    return total / z.size


def sigmoid_binary_cross_entropy(xp, logits, targets, out=None):
    if not (_fusable(logits, targets, *(() if out is None else (out,)))
            and targets.shape == logits.shape and (out is None or out.shape == logits.shape)):
        return reference.sigmoid_binary_cross_entropy(xp, logits, targets, out)
    grad = np.empty_like(logits) if out is None else out
    loss = _bce(logits.reshape(-1), targets.reshape(-1), grad.reshape(-1), logits.dtype.type(1.0))
    return np.asarray(loss, dtype=logits.dtype), grad


# -- activations -------------------------------------------------------------------------------
@njit(**_INLINE)
def _act_fast(v, act, alpha):
    """``elementwise._act_elem`` with the vectorisable exp/expm1/tanh above (CPU only)."""
    zero = alpha - alpha
    one = zero + np.float32(1.0)  # typed like the data: no float64 promotion of float32 loops
    if act == SIGMOID:
        e = fast_exp(-abs(v))
        return one / (one + e) if v >= zero else e / (one + e)
    if act == TANH:
        return fast_tanh(v)
    if act == ELU:
        return v if v > zero else alpha * fast_expm1(v)
    if act == SELU:
        return v * SELU_SCALE if v > zero else fast_expm1(v) * (SELU_SCALE * SELU_ALPHA)
    return _act_elem(v, act, alpha)


@njit(**_INLINE)
def _bias_act_loop(z, b, act, alpha, i):
    for j in range(z.shape[1]):
        z[i, j] = _act_fast(z[i, j] + b[j], act, alpha)


@njit(**_INLINE)
def _bias_act_row(z, b, act, alpha, i):
    # One loop per activation, each called with a constant code: the inlined body folds to branch-free
    # code that LLVM vectorises (a loop over the generic 7-way body does not).
    if act == RELU:
        _bias_act_loop(z, b, RELU, alpha, i)
    elif act == LEAKY_RELU:
        _bias_act_loop(z, b, LEAKY_RELU, alpha, i)
    elif act == SIGMOID:
        _bias_act_loop(z, b, SIGMOID, alpha, i)
    elif act == TANH:
        _bias_act_loop(z, b, TANH, alpha, i)
    elif act == ELU:
        _bias_act_loop(z, b, ELU, alpha, i)
    elif act == SELU:
        _bias_act_loop(z, b, SELU, alpha, i)
    else:
        _bias_act_loop(z, b, IDENTITY, alpha, i)


@njit(**_JIT)
def _bias_act_serial(z, b, act, alpha):
    for i in range(z.shape[0]):
        _bias_act_row(z, b, act, alpha, i)


@njit(parallel=True, **_JIT)
def _bias_act_parallel(z, b, act, alpha):
    for i in prange(z.shape[0]):
        _bias_act_row(z, b, act, alpha, i)


def bias_act(xp, z, b, act, alpha=0.0):
    if act not in _ACT_CODES:
        return reference.bias_act(xp, z, b, act, alpha)  # raises the reference's error
    if not (_fusable(z, *(() if b is None else (b,))) and z.flags.writeable and z.size
            and (b is None or (z.ndim == 2 and b.shape == (z.shape[1],)))):
        return reference.bias_act(xp, z, b, act, alpha)
    z2 = z if b is not None else z.reshape(1, -1)
    kernel = _bias_act_parallel if z.size >= PARALLEL_MIN_ELEMENTS else _bias_act_serial
    kernel(z2, np.zeros(z2.shape[1], z.dtype) if b is None else b, _ACT_CODES[act], _scalar(z.dtype, alpha))
    return z


# ``in_place`` (out is dy) is a separate branch, not just out=dy: LLVM cannot prove that two array arguments
# are the same array, so its overlap check would send an aliased loop to the scalar fallback (3x slower).
@njit(**_INLINE)
def _act_backward_loop(dy, y, act, alpha, out, in_place, start, stop):
    # Slices, then indices from 0: an index that might be negative gets a wrap-around check that stops
    # LLVM from vectorising the loop (5x slower measured).
    d, w, o = dy[start:stop], y[start:stop], out[start:stop]
    if in_place:
        for i in range(d.size):
            d[i] = _act_grad_elem(d[i], w[i], act, alpha)
    else:
        for i in range(d.size):
            o[i] = _act_grad_elem(d[i], w[i], act, alpha)


@njit(**_INLINE)
def _act_backward_range(dy, y, act, alpha, out, in_place, start, stop):
    # constant codes per loop, as in _bias_act_row
    if act == RELU:
        _act_backward_loop(dy, y, RELU, alpha, out, in_place, start, stop)
    elif act == LEAKY_RELU:
        _act_backward_loop(dy, y, LEAKY_RELU, alpha, out, in_place, start, stop)
    elif act == SIGMOID:
        _act_backward_loop(dy, y, SIGMOID, alpha, out, in_place, start, stop)
    elif act == TANH:
        _act_backward_loop(dy, y, TANH, alpha, out, in_place, start, stop)
    elif act == ELU:
        _act_backward_loop(dy, y, ELU, alpha, out, in_place, start, stop)
    elif act == SELU:
        _act_backward_loop(dy, y, SELU, alpha, out, in_place, start, stop)
    else:
        _act_backward_loop(dy, y, IDENTITY, alpha, out, in_place, start, stop)


@njit(**_JIT)
def _act_backward_serial(dy, y, act, alpha, out, in_place):
    _act_backward_range(dy, y, act, alpha, out, in_place, 0, dy.size)


@njit(parallel=True, **_JIT)
def _act_backward_parallel(dy, y, act, alpha, out, in_place, bands):
    # contiguous bands, one per thread, each running the serial loop
    n = dy.size
    for t in prange(bands):
        _act_backward_range(dy, y, act, alpha, out, in_place, t * n // bands, (t + 1) * n // bands)


# With the bias gradient: rows of a 2-D dy, each element's dz written and added to its column's sum in the
# same pass. Blocks of _SUM_BLOCK rows are summed in the data's dtype (SIMD-wide), the blocks' sums in
# float64: as accurate as the reference's pairwise sum, and ~20% faster than float64 throughout.
_SUM_BLOCK = 16


@njit(**_INLINE)
def _bias_grad_loop(dy, y, act, alpha, out, in_place, acc, start, stop):
    block = np.empty(dy.shape[1], dy.dtype)
    for first in range(start, stop, _SUM_BLOCK):
        block[:] = 0
        for i in range(first, min(first + _SUM_BLOCK, stop)):
            if in_place:
                for j in range(dy.shape[1]):
                    d = _act_grad_elem(dy[i, j], y[i, j], act, alpha)
                    dy[i, j] = d
                    block[j] += d
            else:
                for j in range(dy.shape[1]):
                    d = _act_grad_elem(dy[i, j], y[i, j], act, alpha)
                    out[i, j] = d
                    block[j] += d
        for j in range(dy.shape[1]):
            acc[j] += block[j]


@njit(**_INLINE)
def _bias_grad_rows(dy, y, act, alpha, out, in_place, acc, start, stop):
    if act == RELU:  # constant codes per loop, as in _bias_act_row
        _bias_grad_loop(dy, y, RELU, alpha, out, in_place, acc, start, stop)
    elif act == LEAKY_RELU:
        _bias_grad_loop(dy, y, LEAKY_RELU, alpha, out, in_place, acc, start, stop)
    elif act == SIGMOID:
        _bias_grad_loop(dy, y, SIGMOID, alpha, out, in_place, acc, start, stop)
    elif act == TANH:
        _bias_grad_loop(dy, y, TANH, alpha, out, in_place, acc, start, stop)
    elif act == ELU:
        _bias_grad_loop(dy, y, ELU, alpha, out, in_place, acc, start, stop)
    elif act == SELU:
        _bias_grad_loop(dy, y, SELU, alpha, out, in_place, acc, start, stop)
    else:
        _bias_grad_loop(dy, y, IDENTITY, alpha, out, in_place, acc, start, stop)


@njit(**_JIT)
def _act_backward_bias_serial(dy, y, act, alpha, out, in_place, bias_grad):
    acc = np.zeros(dy.shape[1], np.float64)
    _bias_grad_rows(dy, y, act, alpha, out, in_place, acc, 0, dy.shape[0])
    for j in range(acc.size):
        bias_grad[j] = acc[j]


@njit(parallel=True, **_JIT)
def _act_backward_bias_parallel(dy, y, act, alpha, out, in_place, bias_grad, bands):
    # One band of rows and one partial sum per thread, added in a fixed order: deterministic for a fixed
    # thread count, as the other parallel kernels.
    n = dy.shape[0]
    acc = np.zeros((bands, dy.shape[1]), np.float64)
    for t in prange(bands):
        _bias_grad_rows(dy, y, act, alpha, out, in_place, acc[t], t * n // bands, (t + 1) * n // bands)
    for j in range(dy.shape[1]):
        total = acc[0, j]
        for t in range(1, bands):
            total += acc[t, j]
        bias_grad[j] = total


def act_backward(xp, dy, y, act, alpha=0.0, out=None, bias_grad=None):
    if act not in _ACT_CODES:
        return reference.act_backward(xp, dy, y, act, alpha, out, bias_grad)
    if not (_fusable(dy, y, *(() if out is None else (out,)), *(() if bias_grad is None else (bias_grad,)))
            and dy.shape == y.shape and (out is None or (out.shape == dy.shape and out.flags.writeable))
            and (bias_grad is None or (dy.ndim == 2 and bias_grad.shape == (dy.shape[1],)
                                       and bias_grad.flags.writeable))):
        return reference.act_backward(xp, dy, y, act, alpha, out, bias_grad)
    result = np.empty_like(dy) if out is None else out
    code, a, in_place = _ACT_CODES[act], _scalar(dy.dtype, alpha), result is dy
    if bias_grad is not None:
        if dy.size >= PARALLEL_MIN_ELEMENTS:
            _act_backward_bias_parallel(dy, y, code, a, result, in_place, bias_grad, numba.get_num_threads())
        else:
            _act_backward_bias_serial(dy, y, code, a, result, in_place, bias_grad)
    elif dy.size >= PARALLEL_MIN_ELEMENTS:
        _act_backward_parallel(dy.reshape(-1), y.reshape(-1), code, a, result.reshape(-1), in_place,
                               numba.get_num_threads())
    else:
        _act_backward_serial(dy.reshape(-1), y.reshape(-1), code, a, result.reshape(-1), in_place)
    return result


# -- optimizer updates -------------------------------------------------------------------------
# Hyper-parameters travel as one array ``hp`` in the parameters' dtype: float32 updates stay in float32
# SIMD lanes (a Python float would promote them to float64), and the call stays cheap.
@njit(**_JIT)
def _sgd_serial(p, g, v, hp, nesterov, has_v, do_clip):
    lr, mom, l2, scale, clip = hp[0], hp[1], hp[2], hp[3], hp[4]
    for i in range(p.size):
        p[i], vi = _sgd_elem(p[i], g[i], v[i], lr, mom, nesterov, has_v, l2, scale, clip, do_clip)
        if has_v:
            v[i] = vi


@njit(parallel=True, **_JIT)
def _sgd_parallel(p, g, v, hp, nesterov, has_v, do_clip):
    lr, mom, l2, scale, clip = hp[0], hp[1], hp[2], hp[3], hp[4]
    for i in prange(p.size):
        p[i], vi = _sgd_elem(p[i], g[i], v[i], lr, mom, nesterov, has_v, l2, scale, clip, do_clip)
        if has_v:
            v[i] = vi


@njit(**_JIT)
def _rmsprop_serial(p, g, s, hp, do_clip):
    lr, rho, one_minus_rho, eps, l2, scale, clip = hp[0], hp[1], hp[2], hp[3], hp[4], hp[5], hp[6]
    for i in range(p.size):
        p[i], s[i] = _rmsprop_elem(p[i], g[i], s[i], lr, rho, one_minus_rho, eps, l2, scale, clip, do_clip)


@njit(parallel=True, **_JIT)
def _rmsprop_parallel(p, g, s, hp, do_clip):
    lr, rho, one_minus_rho, eps, l2, scale, clip = hp[0], hp[1], hp[2], hp[3], hp[4], hp[5], hp[6]
    for i in prange(p.size):
        p[i], s[i] = _rmsprop_elem(p[i], g[i], s[i], lr, rho, one_minus_rho, eps, l2, scale, clip, do_clip)


@njit(**_JIT)
def _adam_serial(p, g, m, v, hp, do_clip):
    b1, c1, b2, c2, eps, step_size, inv_sqrt_bias2, decay, l2, scale, clip = hp[0], hp[1], hp[2], hp[3], hp[4], \
        hp[5], hp[6], hp[7], hp[8], hp[9], hp[10]
    for i in range(p.size):
        p[i], m[i], v[i] = _adam_elem(p[i], g[i], m[i], v[i], b1, c1, b2, c2, eps, step_size, inv_sqrt_bias2,
                                      decay, l2, scale, clip, do_clip)


@njit(parallel=True, **_JIT)
def _adam_parallel(p, g, m, v, hp, do_clip):
    b1, c1, b2, c2, eps, step_size, inv_sqrt_bias2, decay, l2, scale, clip = hp[0], hp[1], hp[2], hp[3], hp[4], \
        hp[5], hp[6], hp[7], hp[8], hp[9], hp[10]
    for i in prange(p.size):
        p[i], m[i], v[i] = _adam_elem(p[i], g[i], m[i], v[i], b1, c1, b2, c2, eps, step_size, inv_sqrt_bias2,
                                      decay, l2, scale, clip, do_clip)


def _flat_ok(p, *others) -> bool:
    return _fusable(p, *others) and p.ndim == 1 and p.flags.writeable and all(o.shape == p.shape for o in others)


def sgd_update(xp, p, g, v, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
               grad_scale=1.0, clip_value=math.inf):
    has_v = momentum != 0.0
    if not _flat_ok(p, g, *((v,) if has_v else ())):
        return reference.sgd_update(xp, p, g, v, lr=lr, momentum=momentum, nesterov=nesterov,
                                    weight_decay=weight_decay, grad_scale=grad_scale, clip_value=clip_value)
    kernel = _sgd_parallel if p.size >= PARALLEL_MIN_ELEMENTS else _sgd_serial
    hp = np.array((lr, momentum, weight_decay, grad_scale, clip_value), dtype=p.dtype)
    kernel(p, g, v if has_v else g, hp, bool(nesterov), has_v, math.isfinite(clip_value))


def rmsprop_update(xp, p, g, s, *, lr, rho=0.9, eps=1e-8, weight_decay=0.0,
                   grad_scale=1.0, clip_value=math.inf):
    if not _flat_ok(p, g, s):
        return reference.rmsprop_update(xp, p, g, s, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                        grad_scale=grad_scale, clip_value=clip_value)
    kernel = _rmsprop_parallel if p.size >= PARALLEL_MIN_ELEMENTS else _rmsprop_serial
    hp = np.array((lr, rho, 1.0 - rho, eps, weight_decay, grad_scale, clip_value), dtype=p.dtype)
    kernel(p, g, s, hp, math.isfinite(clip_value))


def adam_update(xp, p, g, m, v, *, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                decoupled=False, grad_scale=1.0, clip_value=math.inf):
    if not _flat_ok(p, g, m, v):
        return reference.adam_update(xp, p, g, m, v, lr=lr, step=step, beta1=beta1, beta2=beta2, eps=eps,
                                     weight_decay=weight_decay, decoupled=decoupled, grad_scale=grad_scale,
                                     clip_value=clip_value)
    kernel = _adam_parallel if p.size >= PARALLEL_MIN_ELEMENTS else _adam_serial
    hp = np.array((beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, lr / (1.0 - beta1**step),
                   1.0 / math.sqrt(1.0 - beta2**step), 1.0 - lr * weight_decay if decoupled else 1.0,
                   0.0 if decoupled else weight_decay, grad_scale, clip_value), dtype=p.dtype)
    kernel(p, g, m, v, hp, math.isfinite(clip_value))
