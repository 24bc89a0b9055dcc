"""Matrix products in numba.cuda with the Dense layer's elementwise work fused into their epilogue.

A training step replayed as a CUDA graph cannot call cuBLAS through CuPy (CuPy refuses cuBLAS during stream
capture, CuPy issue #6290), so the captured step needs products of its own. ``gemm`` computes

    C = op(A) @ op(B)          op = transpose or not, per operand (so x @ W, x.T @ dz and dz @ W.T need no copy)

and, in the same kernel, one of two epilogues from the activation table:

- forward: ``C = act(C + bias)``: a Dense layer's whole forward in one kernel;
- backward: ``C = act'(C) from saved`` (``act_derivative(C, saved)``): the input gradient of a layer and the
  previous layer's activation derivative in one kernel.

Each block computes a ``bm x bn`` tile of C from ``bk``-deep slices of A and B staged in shared memory; each
thread keeps a ``tm x tn`` block of outputs in registers (register blocking: every value read from shared
memory is used ``tm`` or ``tn`` times). Edge tiles are zero-padded, so any shape works. Kernels are compiled
per (activation, epilogue, dtype, tile) on first use. The tile sizes are the first thing to tune on a GPU
(``TILE``); the simulator tests use a tiny tile (``tests/cudasim/test_gemm.py``).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from numba import float32, float64

from .activations import CODES
from .jit import act_derivative, act_forward
from .numba_cuda import cuda


@dataclass(frozen=True)
class Tile:
    bm: int = 64  # rows of C per block
    bn: int = 64  # columns of C per block
    bk: int = 16  # depth of the shared-memory slices
    tm: int = 4   # rows of C per thread
    tn: int = 4   # columns of C per thread

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)


TILE = Tile()  # 256 threads, 16 outputs each: not yet tuned on a GPU


@cuda.jit(device=True)
def _stage(tile, src, k_major, base, k0, limit, k_total, width, depth, tid, threads):
    """``tile[kk, r] = op(src)[base + r, k0 + kk]``, zero outside; ``k_major``: src is stored (K, rows)."""
    for e in range(tid, width * depth, threads):
        if k_major:  # contiguous along the rows
            kk, r = e // width, e % width
            inside = k0 + kk < k_total and base + r < limit
            tile[kk, r] = src[k0 + kk, base + r] if inside else 0
        else:        # contiguous along k
            r, kk = e // depth, e % depth
            inside = k0 + kk < k_total and base + r < limit
            tile[kk, r] = src[base + r, k0 + kk] if inside else 0


@functools.lru_cache(maxsize=None)
def _kernel(code: int, backward: bool, double: bool, tile: Tile):
    bm, bn, bk, tm, tn = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn
    threads, cols_of_threads = tile.threads, bn // tn
    dtype = float64 if double else float32

    def kernel(a, b, c, bias, saved, has_bias, alpha, trans_a, trans_b):
        m, n = c.shape
        k_total = a.shape[0] if trans_a else a.shape[1]
        tid = cuda.threadIdx.x
        ty, tx = tid // cols_of_threads, tid % cols_of_threads
        row0, col0 = cuda.blockIdx.y * bm, cuda.blockIdx.x * bn
        sa = cuda.shared.array((bk, bm), dtype)
        sb = cuda.shared.array((bk, bn), dtype)
        acc = cuda.local.array((tm, tn), dtype)
        fa = cuda.local.array(tm, dtype)
        fb = cuda.local.array(tn, dtype)
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = 0
        for k0 in range(0, k_total, bk):
            # Stage the slices; each thread loads along the operand's contiguous axis (coalesced reads).
            _stage(sa, a, trans_a, row0, k0, m, k_total, bm, bk, tid, threads)
            _stage(sb, b, not trans_b, col0, k0, n, k_total, bn, bk, tid, threads)
            cuda.syncthreads()
            for kk in range(bk):
                for i in range(tm):
                    fa[i] = sa[kk, ty * tm + i]
                for j in range(tn):
                    fb[j] = sb[kk, tx * tn + j]
                for i in range(tm):
                    for j in range(tn):
                        acc[i, j] += fa[i] * fb[j]
            cuda.syncthreads()
        for i in range(tm):
            r = row0 + ty * tm + i
            if r < m:
                for j in range(tn):
                    col = col0 + tx * tn + j
                    if col < n:
                        v = acc[i, j]
                        if backward:
                            c[r, col] = act_derivative(v, saved[r, col], code, alpha)
                        else:
                            if has_bias:
                                v += bias[col]
                            c[r, col] = act_forward(v, code, alpha)

    kernel.__name__ = f"gemm_{'backward' if backward else 'forward'}_{code}"
    return cuda.jit(kernel)


def gemm(a, b, c, *, trans_a=False, trans_b=False, bias=None, act="identity", alpha=0.0, saved=None,
         stream=0, tile: Tile = TILE):
    """``c[...] = epilogue(op(a) @ op(b))`` on the device; ``saved`` selects the backward epilogue.

    ``a``, ``b``, ``c``, ``bias`` and ``saved`` are CUDA arrays of one float dtype (NumPy arrays under the
    simulator); ``c`` must not alias ``a`` or ``b``.
    """
    m, n = c.shape
    ka = a.shape[0] if trans_a else a.shape[1]
    kb = b.shape[1] if trans_b else b.shape[0]
    rows_a = a.shape[1] if trans_a else a.shape[0]
    cols_b = b.shape[0] if trans_b else b.shape[1]
    if ka != kb or rows_a != m or cols_b != n:
        raise ValueError(f"gemm shapes do not agree: op(a) {rows_a}x{ka}, op(b) {kb}x{cols_b}, c {m}x{n}")
    if act not in CODES:
        raise ValueError(f"unknown activation {act!r}")
    backward = saved is not None
    if backward and tuple(saved.shape) != (m, n):
        raise ValueError(f"saved must be shaped like c {m}x{n}, got {tuple(saved.shape)}")
    double = c.dtype.itemsize == 8
    kernel = _kernel(CODES[act], backward, double, tile)
    grid = (math.ceil(n / tile.bn), math.ceil(m / tile.bm))
    # Unused operands get stand-ins of the right type, which the kernel's branches never read; taken from the
    # input a, never the output c (the simulator copies every argument back after the launch).
    kernel[grid, tile.threads, stream](a, b, c, a[0] if bias is None else bias, saved if backward else a,
                                       bias is not None, c.dtype.type(alpha), bool(trans_a), bool(trans_b))
    return c
