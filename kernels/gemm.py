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
memory is used ``tm`` or ``tn`` times). Edge tiles are zero-padded, so any shape works. A small batch's product
has few tiles and a long k (64 x 784 x 500: 8 tiles, 49 slices), which its few blocks walk slice after slice,
each waiting on its loads: measured on an H200, 166 µs for that product as a replayed graph, where a graph's
elementwise kernel takes 2-3 µs. So ``plan`` splits such a k between blocks, whose parts a second kernel adds in a
fixed order (the same bits every run) before the epilogue. Kernels are compiled per (activation, epilogue, dtype,
tile, split) on first use; the simulator tests use a tiny tile (``tests/cudasim/test_gemm.py``).
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
    # Load the next slice from global memory into registers while the block computes on the current one, so
    # that a block's few slices (a split product's) do not each wait on their loads. The same sums in the same
    # order: the same bits either way.
    prefetch: bool = False

    def __post_init__(self):
        if (self.bm * self.bk) % self.threads or (self.bn * self.bk) % self.threads:
            raise ValueError(f"a {self.bm}x{self.bn} tile's {self.bk}-deep slices do not divide between "
                             f"{self.threads} threads")

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)


# 256 threads, 16 outputs each (32x32 tiles measured no faster on an H200: bench/RESULTS.md); prefetching not yet
# timed on a GPU: bench/graph_probe.py times each product and the whole recorded step both ways
TILE = Tile(prefetch=True)


@cuda.jit(device=True)
def _place(e, k_major, width, depth):
    """Element ``e`` of a slice's staging as (kk, r): consecutive threads take consecutive addresses of src."""
    if k_major:  # src stored (K, rows): contiguous along the rows
        return e // width, e % width
    return e % depth, e // depth  # contiguous along k


@cuda.jit(device=True)
def _stage(tile, src, k_major, base, k0, limit, k_total, width, depth, tid, threads):
    """``tile[kk, r] = op(src)[base + r, k0 + kk]``, zero outside; ``k_major``: src is stored (K, rows)."""
    for e in range(tid, width * depth, threads):
        kk, r = _place(e, k_major, width, depth)
        inside = k0 + kk < k_total and base + r < limit
        if k_major:
            tile[kk, r] = src[k0 + kk, base + r] if inside else 0
        else:
            tile[kk, r] = src[base + r, k0 + kk] if inside else 0


@cuda.jit(device=True)
def _fetch(regs, src, k_major, base, k0, limit, k_total, width, depth, tid, threads):
    """This thread's share of ``_stage``'s elements into registers: ``regs[i]`` is element tid + i * threads."""
    for i in range(regs.shape[0]):
        kk, r = _place(tid + i * threads, k_major, width, depth)
        inside = k0 + kk < k_total and base + r < limit
        if k_major:
            regs[i] = src[k0 + kk, base + r] if inside else 0
        else:
            regs[i] = src[base + r, k0 + kk] if inside else 0


@cuda.jit(device=True)
def _put(tile, regs, k_major, width, depth, tid, threads):
    """``_fetch``'s registers into the shared slice."""
    for i in range(regs.shape[0]):
        kk, r = _place(tid + i * threads, k_major, width, depth)
        tile[kk, r] = regs[i]


@functools.lru_cache(maxsize=None)
def _epilogue(code: int, backward: bool):
    """``c[r, col] = epilogue(v)``: act(v + bias) forward, act'(v) from ``saved`` backward."""
    @cuda.jit(device=True)
    def epilogue(v, r, col, c, bias, saved, has_bias, alpha):
        if backward:
            c[r, col] = act_derivative(v, saved[r, col], code, alpha)
        else:
            if has_bias:
                v += bias[col]
            c[r, col] = act_forward(v, code, alpha)
    return epilogue


@functools.lru_cache(maxsize=None)
def _kernel(code: int, backward: bool, double: bool, tile: Tile, split: bool = False):
    """The tiled product. Block z of the grid sums k in [z * k_chunk, (z + 1) * k_chunk). ``split``: the sums go
    unfinished to ``out[z]`` of a (splits, m, n) workspace, for ``_reduce_kernel``; else ``out`` is (1, m, n), all of
    k is one block's, and the epilogue writes it."""
    bm, bn, bk, tm, tn = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn
    threads, cols_of_threads = tile.threads, bn // tn
    prefetch, per_a, per_b = tile.prefetch, bm * bk // threads, bn * bk // threads
    dtype = float64 if double else float32
    epilogue = _epilogue(code, backward)

    def kernel(a, b, out, bias, saved, has_bias, alpha, trans_a, trans_b, k_chunk):
        m, n = out.shape[1], out.shape[2]
        k_total = a.shape[0] if trans_a else a.shape[1]
        z = cuda.blockIdx.z
        k_begin = z * k_chunk
        k_end = min(k_total, k_begin + k_chunk)
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
        if prefetch:  # the first slice into registers
            ra = cuda.local.array(per_a, dtype)
            rb = cuda.local.array(per_b, dtype)
            _fetch(ra, a, trans_a, row0, k_begin, m, k_end, bm, bk, tid, threads)
            _fetch(rb, b, not trans_b, col0, k_begin, n, k_end, bn, bk, tid, threads)
        for k0 in range(k_begin, k_end, bk):
            # Stage the slices; each thread loads along the operand's contiguous axis (coalesced reads).
            if prefetch:
                _put(sa, ra, trans_a, bm, bk, tid, threads)
                _put(sb, rb, not trans_b, bn, bk, tid, threads)
                cuda.syncthreads()
                if k0 + bk < k_end:  # the next slice's loads, in flight while this one is used
                    _fetch(ra, a, trans_a, row0, k0 + bk, m, k_end, bm, bk, tid, threads)
                    _fetch(rb, b, not trans_b, col0, k0 + bk, n, k_end, bn, bk, tid, threads)
            else:
                _stage(sa, a, trans_a, row0, k0, m, k_end, bm, bk, tid, threads)
                _stage(sb, b, not trans_b, col0, k0, n, k_end, bn, bk, tid, threads)
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
                        if split:
                            out[z, r, col] = acc[i, j]
                        else:
                            epilogue(acc[i, j], r, col, out[0], bias, saved, has_bias, alpha)

    kernel.__name__ = f"gemm_{'split' if split else 'backward' if backward else 'forward'}_{code}"
    return cuda.jit(kernel)


@functools.lru_cache(maxsize=None)
def _reduce_kernel(code: int, backward: bool):
    """``c = epilogue(sum over z of parts[z])``, the parts added in the order of z (the same bits every run)."""
    epilogue = _epilogue(code, backward)

    def kernel(parts, c, bias, saved, has_bias, alpha):
        splits, m, n = parts.shape
        for e in range(cuda.grid(1), m * n, cuda.gridsize(1)):
            r, col = e // n, e % n
            v = parts[0, r, col]
            for z in range(1, splits):
                v += parts[z, r, col]
            epilogue(v, r, col, c, bias, saved, has_bias, alpha)

    kernel.__name__ = f"gemm_reduce_{'backward' if backward else 'forward'}_{code}"
    return cuda.jit(kernel)


MIN_SLICES = 4       # bk-deep slices a block of a split product sums at least
REDUCE_THREADS = 256


def plan(m: int, n: int, k: int, tile: Tile | None = None, target_blocks: int = 1) -> tuple[int, int]:
    """(splits, k_chunk): how a product's k is divided between blocks. A small batch's product has few tiles of
    C (64 x 784 x 500: 8) and a long k, which its few blocks would walk one slice after another, each waiting on
    its loads; split, ``target_blocks`` blocks (twice the GPU's multiprocessors) share it, each summing at least
    ``MIN_SLICES`` slices, and one more kernel adds the parts. A product with tiles enough is not split."""
    tile = tile or TILE
    blocks = math.ceil(m / tile.bm) * math.ceil(n / tile.bn)
    slices = max(1, math.ceil(k / tile.bk))
    return _split(k, min(math.ceil(slices / MIN_SLICES), math.ceil(target_blocks / blocks)), tile)


def _split(k: int, splits: int, tile: Tile) -> tuple[int, int]:
    """(splits, k_chunk) for at most ``splits`` blocks over k in whole slices, each with some of k."""
    k_chunk = math.ceil(max(1, math.ceil(k / tile.bk)) / max(1, splits)) * tile.bk
    return max(1, math.ceil(k / k_chunk)), k_chunk


@functools.lru_cache(maxsize=None)
def target_blocks() -> int:
    """Twice the current GPU's multiprocessors (1 under the simulator, whose grids run one thread at a time)."""
    device = cuda.get_current_device()
    return 2 * getattr(device, "MULTIPROCESSOR_COUNT", 0) or 1


def gemm(a, b, c, *, trans_a=False, trans_b=False, bias=None, act="identity", alpha=0.0, saved=None,
         stream=0, tile: Tile | None = None, splits: int = 1, workspace=None):
    """``c[...] = epilogue(op(a) @ op(b))`` on the device; ``saved`` selects the backward epilogue.

    ``a``, ``b``, ``c``, ``bias`` and ``saved`` are CUDA arrays of one float dtype (NumPy arrays under the
    simulator); ``c`` must not alias ``a`` or ``b``. ``splits`` > 1 (from ``plan``) divides k between that many
    blocks per tile of C, whose parts go to ``workspace``, a (splits, m, n) array of c's dtype. ``tile``: the
    module's ``TILE`` when not given.
    """
    tile = tile or TILE
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
    splits, k_chunk = _split(ka, splits, tile)
    if splits > 1 and (workspace is None or tuple(workspace.shape) != (splits, m, n)):
        raise ValueError(f"splits={splits} needs a workspace shaped ({splits}, {m}, {n})")
    double = c.dtype.itemsize == 8
    code = CODES[act]
    # Unused operands get stand-ins of the right type, which the kernel's branches never read; taken from the
    # input a, never the output c (the simulator copies every argument back after the launch).
    extras = (a[0] if bias is None else bias, saved if backward else a, bias is not None, c.dtype.type(alpha))
    grid = (math.ceil(n / tile.bn), math.ceil(m / tile.bm), splits)
    out = workspace if splits > 1 else c.reshape(1, m, n)
    _kernel(code, backward, double, tile, splits > 1)[grid, tile.threads, stream](
        a, b, out, *extras, bool(trans_a), bool(trans_b), k_chunk)
    if splits > 1:
        blocks = min(4096, math.ceil(m * n / REDUCE_THREADS))
        _reduce_kernel(code, backward)[blocks, REDUCE_THREADS, stream](workspace, c, *extras)
    return c
