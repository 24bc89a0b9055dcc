"""Numba CUDA kernels for CuPy arrays (passed through ``__cuda_array_interface__``).

The public functions have exactly the reference signatures and side effects and fall back to
``reference.py`` for anything but C-contiguous float32/float64 CuPy arrays. Kernels launch on CuPy's
current stream. Per-element maths comes from ``elementwise.py`` (shared with the CPU kernels); the
``launch_*`` functions take any CUDA arrays (NumPy arrays under ``NUMBA_ENABLE_CUDASIM=1``) and are
what the simulator tests drive.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from . import reference
from .elementwise import ACT_CODES, _act_elem, _act_grad_elem, _adam_elem, _rmsprop_elem, _sgd_elem

THREADS = 256          # elementwise kernels
ROW_THREADS = 128      # softmax: one block per row; a power of two for the tree reductions
MAX_ROW_THREADS = 256  # size of the shared reduction buffers
MAX_BLOCKS = 8192      # grid-stride loops cover the rest


def _blocks(size, threads):
    return max(1, min(MAX_BLOCKS, (size + threads - 1) // threads))


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
    # Tree reductions written inline: calling a device function needs a driver to compile to PTX.
    step = nt // 2
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
    cuda.syncthreads()
    step = nt // 2
    while step > 0:
        if tid < step:
            red_sum[tid] += red_sum[tid + step]
        cuda.syncthreads()
        step //= 2
    s = red_sum[0]
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


# -- binary cross-entropy ----------------------------------------------------------------------
@cuda.jit
def _bce_kernel(z, t, inv, grad, elem_loss):
    for i in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        x = z[i]
        e = math.exp(-abs(x))
        elem_loss[i] = (x if x > 0 else 0.0 * x) - x * t[i] + math.log1p(e)
        sig = 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)
        grad[i] = (sig - t[i]) * inv


def launch_bce(z, t, grad, elem_loss, stream=0, threads=THREADS):
    _bce_kernel[_blocks(z.size, threads), threads, stream](z, t, 1.0 / z.size, grad, elem_loss)


# -- activations -------------------------------------------------------------------------------
@cuda.jit
def _bias_act_kernel(z, b, has_bias, act, alpha):
    cols = z.shape[1]
    for k in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        i, j = k // cols, k % cols
        v = z[i, j] + b[j] if has_bias else z[i, j]
        z[i, j] = _act_elem(v, act, alpha)


@cuda.jit
def _act_backward_kernel(dy, y, act, alpha, out):
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        out[i] = _act_grad_elem(dy[i], y[i], act, alpha)


def launch_bias_act(z2, b, has_bias, act_code, alpha, stream=0, threads=THREADS):
    _bias_act_kernel[_blocks(z2.size, threads), threads, stream](z2, b, has_bias, act_code, alpha)


def launch_act_backward(dy, y, act_code, alpha, out, stream=0, threads=THREADS):
    _act_backward_kernel[_blocks(dy.size, threads), threads, stream](dy, y, act_code, alpha, out)


# -- optimizers --------------------------------------------------------------------------------
@cuda.jit
def _sgd_kernel(p, g, v, lr, mom, nesterov, has_v, l2, scale, clip, do_clip):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pi, vi = _sgd_elem(p[i], g[i], v[i], lr, mom, nesterov, has_v, l2, scale, clip, do_clip)
        p[i] = pi
        if has_v:
            v[i] = vi


@cuda.jit
def _rmsprop_kernel(p, g, s, lr, rho, one_minus_rho, eps, l2, scale, clip, do_clip):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        p[i], s[i] = _rmsprop_elem(p[i], g[i], s[i], lr, rho, one_minus_rho, eps, l2, scale, clip, do_clip)


@cuda.jit
def _adam_kernel(p, g, m, v, b1, c1, b2, c2, eps, step_size, inv_sqrt_bias2, decay, l2, scale, clip, do_clip):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        p[i], m[i], v[i] = _adam_elem(p[i], g[i], m[i], v[i], b1, c1, b2, c2, eps, step_size, inv_sqrt_bias2, decay, l2,
                                      scale,
                                      clip, do_clip)


def launch_sgd(p, g, v, lr, momentum, nesterov, weight_decay, grad_scale, clip_value, stream=0, threads=THREADS):
    has_v = momentum != 0.0
    t = p.dtype.type
    _sgd_kernel[_blocks(p.size, threads), threads, stream](
        p, g, v if has_v else g, t(lr), t(momentum), bool(nesterov), has_v, t(weight_decay), t(grad_scale),
        t(clip_value), math.isfinite(clip_value))


def launch_rmsprop(p, g, s, lr, rho, eps, weight_decay, grad_scale, clip_value, stream=0, threads=THREADS):
    t = p.dtype.type
    _rmsprop_kernel[_blocks(p.size, threads), threads, stream](
        p, g, s, t(lr), t(rho), t(1.0 - rho), t(eps), t(weight_decay), t(grad_scale), t(clip_value),
        math.isfinite(clip_value))


def launch_adam(p, g, m, v, lr, step, beta1, beta2, eps, weight_decay, decoupled, grad_scale, clip_value,
                stream=0, threads=THREADS):
    t = p.dtype.type
    decay = 1.0 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    _adam_kernel[_blocks(p.size, threads), threads, stream](
        p, g, m, v, t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(eps), t(lr / (1.0 - beta1**step)),
        t(1.0 / math.sqrt(1.0 - beta2**step)),
        t(decay), t(l2), t(grad_scale), t(clip_value), math.isfinite(clip_value))


# -- the registry-facing functions (CuPy arrays) -------------------------------------------------
_STREAMS = {}


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


def softmax_cross_entropy(xp, logits, labels, label_smoothing=0.0, out=None):
    if not (_fusable(logits, *(() if out is None else (out,))) and logits.ndim == 2 and labels.ndim == 1
            and labels.dtype.kind in "iu" and labels.shape[0] == logits.shape[0]
            and (out is None or out.shape == logits.shape)):
        return reference.softmax_cross_entropy(xp, logits, labels, label_smoothing, out)
    grad = xp.empty_like(logits) if out is None else out
    row_loss = xp.empty(logits.shape[0], dtype=xp.float64)
    launch_softmax_cross_entropy(logits, labels, label_smoothing, grad, row_loss, _stream())
    return xp.astype(xp.mean(row_loss), logits.dtype), grad


def sigmoid_binary_cross_entropy(xp, logits, targets, out=None):
    if not (_fusable(logits, targets, *(() if out is None else (out,))) and targets.shape == logits.shape):
        return reference.sigmoid_binary_cross_entropy(xp, logits, targets, out)
    grad = xp.empty_like(logits) if out is None else out
    elem_loss = xp.empty(logits.shape, dtype=logits.dtype)
    launch_bce(xp.reshape(logits, (-1,)), xp.reshape(targets, (-1,)), xp.reshape(grad, (-1,)),
               xp.reshape(elem_loss, (-1,)), _stream())
    return xp.mean(elem_loss), grad


def bias_act(xp, z, b, act, alpha=0.0):
    if act not in ACT_CODES or not (_fusable(z, *(() if b is None else (b,))) and z.size
                                    and (b is None or (z.ndim == 2 and b.shape == (z.shape[1],)))):
        return reference.bias_act(xp, z, b, act, alpha)
    z2 = z if b is not None else xp.reshape(z, (1, -1))
    launch_bias_act(z2, z2[0] if b is None else b, b is not None, ACT_CODES[act], z.dtype.type(alpha), _stream())
    return z


def act_backward(xp, dy, y, act, alpha=0.0, out=None, bias_grad=None):
    if act not in ACT_CODES or not (_fusable(dy, y, *(() if out is None else (out,))) and dy.shape == y.shape
                                    and (out is None or out.shape == dy.shape)):
        return reference.act_backward(xp, dy, y, act, alpha, out, bias_grad)
    result = xp.empty_like(dy) if out is None else out
    launch_act_backward(xp.reshape(dy, (-1,)), xp.reshape(y, (-1,)), ACT_CODES[act], dy.dtype.type(alpha),
                        xp.reshape(result, (-1,)), _stream())
    if bias_grad is not None:  # on the GPU the column sums stay a separate reduction (CuPy's)
        bias_grad[...] = xp.sum(result, axis=0)
    return result


def sgd_update(xp, p, g, v, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
               grad_scale=1.0, clip_value=math.inf):
    if not (_fusable(p, g, *((v,) if momentum else ())) and p.ndim == 1):
        return reference.sgd_update(xp, p, g, v, lr=lr, momentum=momentum, nesterov=nesterov,
                                    weight_decay=weight_decay, grad_scale=grad_scale, clip_value=clip_value)
    launch_sgd(p, g, v, lr, momentum, nesterov, weight_decay, grad_scale, clip_value, _stream())


def rmsprop_update(xp, p, g, s, *, lr, rho=0.9, eps=1e-8, weight_decay=0.0,
                   grad_scale=1.0, clip_value=math.inf):
    if not (_fusable(p, g, s) and p.ndim == 1):
        return reference.rmsprop_update(xp, p, g, s, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                        grad_scale=grad_scale, clip_value=clip_value)
    launch_rmsprop(p, g, s, lr, rho, eps, weight_decay, grad_scale, clip_value, _stream())


def adam_update(xp, p, g, m, v, *, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                decoupled=False, grad_scale=1.0, clip_value=math.inf):
    if not (_fusable(p, g, m, v) and p.ndim == 1):
        return reference.adam_update(xp, p, g, m, v, lr=lr, step=step, beta1=beta1, beta2=beta2, eps=eps,
                                     weight_decay=weight_decay, decoupled=decoupled, grad_scale=grad_scale,
                                     clip_value=clip_value)
    launch_adam(p, g, m, v, lr, step, beta1, beta2, eps, weight_decay, decoupled, grad_scale, clip_value, _stream())
