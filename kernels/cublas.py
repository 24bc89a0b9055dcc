"""Matrix products by cuBLAS that a CUDA graph can record, through nvmath-python's bindings (optional).

CuPy refuses every cuBLAS call while a stream records: its wrappers check the stream first (measured on an H200
for ``cupy.matmul`` and for ``cupy_backends``' ``sgemm`` called directly). cuBLAS itself records into a graph once
its handle has a workspace of its own, set beforehand, so that it allocates nothing while recording; nvmath-python
(NVIDIA's bindings of the CUDA math libraries) calls it without CuPy's check. Graph mode's products come from here
where ``MLP_GRAPH_PRODUCTS=cublas`` (``backends/cupy.py``), else from ``gemm.py``.
"""
from __future__ import annotations

import functools
import importlib.util

import numpy as np

WORKSPACE_BYTES = 32 << 20  # what cuBLAS's documentation recommends on Hopper
_ONE_ZERO = {np.dtype(t): (np.ones(1, t), np.zeros(1, t)) for t in (np.float32, np.float64)}  # host scalars


def available() -> bool:
    return importlib.util.find_spec("nvmath") is not None


def column_major_call(a_shape, a_transposed, b_shape, b_transposed):
    """The cuBLAS call computing row-major ``C = A @ B`` (A m x k, B k x n), whose memory is C-contiguous or, where
    ``*_transposed``, is the transpose's. cuBLAS is column-major: a C-contiguous r x c array is there the c x r
    matrix with leading dimension c, so C^T = B^T @ A^T is computed, B's memory first.

    Returns ``(op_b, op_a, n, m, k, ldb, lda, ldc)`` with op 0 (as stored) or 1 (transposed).
    """
    (m, k), n = a_shape, b_shape[1]
    lda = m if a_transposed else k  # the stored array's row length
    ldb = k if b_transposed else n
    return int(b_transposed), int(a_transposed), n, m, k, ldb, lda, n


@functools.lru_cache(maxsize=None)
def _handle(device: int):
    """A cuBLAS handle of this device and a workspace for it (made outside any recording: cublasCreate
    allocates). Cached for the process, workspace included."""
    import cupy
    from nvmath.bindings import cublas

    return cublas.create(), cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)


def matmul(a, b, out=None):
    """``a @ b`` for 2-D CuPy float32/float64 arrays on CuPy's current stream; a transposed operand is read in
    place."""
    import cupy
    from nvmath.bindings import cublas

    def stored(x):  # (C-contiguous memory, read transposed?)
        if x.flags.c_contiguous:
            return x, False
        if x.T.flags.c_contiguous:
            return x.T, True
        return cupy.ascontiguousarray(x), False

    (am, a_t), (bm, b_t) = stored(a), stored(b)
    c = cupy.empty((a.shape[0], b.shape[1]), dtype=a.dtype) if out is None else out
    handle, workspace = _handle(cupy.cuda.Device().id)
    cublas.set_stream(handle, cupy.cuda.get_current_stream().ptr)
    cublas.set_workspace(handle, workspace.data.ptr, WORKSPACE_BYTES)  # cublasSetStream resets it to cuBLAS's pool
    op_b, op_a, n, m, k, ldb, lda, ldc = column_major_call(a.shape, a_t, b.shape, b_t)
    one, zero = _ONE_ZERO[np.dtype(a.dtype)]
    gemm = cublas.sgemm if a.dtype == np.float32 else cublas.dgemm
    gemm(handle, op_b, op_a, n, m, k, one.ctypes.data, bm.data.ptr, ldb, am.data.ptr, lda, zero.ctypes.data,
         c.data.ptr, ldc)
    return c
