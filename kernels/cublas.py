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


def gemm(a, b, c, *, trans_a=False, trans_b=False):
    """``c[...] = op(a) @ op(b)`` on CuPy's current stream, as ``gemm.py``'s ``gemm`` takes them: ``a``, ``b``
    and ``c`` C-contiguous 2-D CuPy arrays of one float dtype, op the transpose where ``trans_*``."""
    import cupy
    from nvmath.bindings import cublas

    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    handle, workspace = _handle(cupy.cuda.Device().id)
    cublas.set_stream(handle, cupy.cuda.get_current_stream().ptr)
    cublas.set_workspace(handle, workspace.data.ptr, WORKSPACE_BYTES)  # cublasSetStream resets it to cuBLAS's pool
    op_b, op_a, rows, cols, depth, ldb, lda, ldc = column_major_call((m, k), trans_a, (k, n), trans_b)
    one, zero = _ONE_ZERO[np.dtype(c.dtype)]
    call = cublas.sgemm if c.dtype == np.float32 else cublas.dgemm
    call(handle, op_b, op_a, rows, cols, depth, one.ctypes.data, b.data.ptr, ldb, a.data.ptr, lda, zero.ctypes.data,
         c.data.ptr, ldc)
    return c
