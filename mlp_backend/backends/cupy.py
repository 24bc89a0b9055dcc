"""CuPy arrays on a CUDA GPU: results written in place (``out=``), the numba.cuda kernels (``kernels/cuda.py``),
dropout masks drawn on the device from a counter the launches advance (in checkpoints, so they resume), training
steps recorded as CUDA graphs (``capture``), and the fastest way between ranks the machine has (NCCL, CUDA-aware
MPI, or pinned host staging)."""
from __future__ import annotations

import contextlib
import os

import numpy as np

from .base import Backend


class CupyBackend(Backend):
    name = "cupy"
    namespace = "array_api_compat.cupy"
    fused_kernels = "cuda"
    writes_into = True
    assigns_by_index = True
    communicator = "mpi-gpu"  # NCCL where CuPy has it, else CUDA-aware MPI where the MPI says so, else staged
    install = "pip install 'mlp-backend[cuda12]' (CUDA 12 drivers) or 'mlp-backend[cuda13]' (CUDA 13)"
    records_graphs = True

    def __init__(self, device=None, dtype="float32", seed=0):
        super().__init__(device, dtype, seed)
        import cupy

        self._cupy = cupy
        self._own_products = False  # recording a step, or its first run: products that a recording can hold
        self._graph_products = graph_products_setting()

    @classmethod
    def owns(cls, x) -> bool:
        import array_api_compat

        return array_api_compat.is_cupy_array(x)

    @classmethod
    def host_copy(cls, x) -> np.ndarray:
        return x.get()

    def resolve_device(self, device):
        import cupy

        try:
            return cupy.cuda.Device(device or 0)
        except cupy.cuda.runtime.CUDARuntimeError as e:  # pragma: no cover - needs a GPU box
            raise RuntimeError(f"CuPy found no usable CUDA device: {e}") from e

    def reseed(self, seed):
        super().reseed(seed)
        self._device_rng = None
        self._masks = None  # uint64 [base, masks drawn] on the device, made at the first mask

    def _mask_state(self):
        if self._masks is None:
            self._masks = self.xp.asarray(np.array([self.rng.integers(2**63), 0], dtype=np.uint64), device=self.device)
        return self._masks

    def keep_mask(self, shape, keep, dtype, out=None, draws=None):
        from ..kernels import fused_module

        cuda_kernels = fused_module("cupy")
        if cuda_kernels is not None:  # counter-based on the device (kernels/cuda.py): no host scalar per mask
            return cuda_kernels.dropout_mask(self.xp, shape, keep, dtype, self._mask_state(), out=out)
        if self._device_rng is None:  # numba.cuda unusable (warned): CuPy's own generator, not in checkpoints
            self._device_rng = self._cupy.random.default_rng(self.seed)
        u = self._device_rng.random(shape, dtype=dtype)
        return self.compute("divide", (u < keep).astype(dtype), keep, out=out)

    def state(self) -> dict:
        """The host generator's state and the device masks' ``[base, masks drawn]`` (read back: a checkpoint)."""
        masks = None if self._masks is None else [int(v) for v in self._masks.get()]
        return {**super().state(), "dropout_masks": masks}

    def set_state(self, state: dict):
        state = dict(state)
        masks = state.pop("dropout_masks", None)
        super().set_state(state)
        self._masks = None if masks is None else self.xp.asarray(np.array(masks, dtype=np.uint64), device=self.device)

    def compute(self, name, *args, out=None, **kwargs):
        if name == "matmul" and self._own_products:
            return self._own_matmul(*args, out=out)
        fn = getattr(self._cupy, name)
        return fn(*args, **kwargs) if out is None else fn(*args, out=out, **kwargs)

    def matmul_bias_act(self, ops, x, w, b, act, alpha=0.0, out=None):
        if self._own_products and self._graph_products == "gemm":  # the bias and activation in the product's epilogue
            return self._own_matmul(x, w, out=out, bias=b, act=act, alpha=alpha)
        return super().matmul_bias_act(ops, x, w, b, act, alpha, out)

    def graph_support(self):
        from ..kernels import fused_module

        if self._graph_products == "gemm" and fused_module("cupy") is None:
            return "the numba.cuda kernels did not load (see the warning), and a recorded step needs their products"
        return super().graph_support()

    @contextlib.contextmanager
    def graph_products(self):
        before, self._own_products = self._own_products, True
        try:
            yield
        finally:
            self._own_products = before

    def capture(self, step):
        """``step()`` recorded as a CUDA graph on a side stream (nothing runs), replayed on the current stream.

        While recording, matrix products are ``_own_matmul``'s (CuPy refuses cuBLAS calls during a capture), and
        every block CuPy's allocator (its memory pool) hands out is kept until the recording is dropped: the
        replays write into those blocks, which the pool would otherwise lend to other arrays once the recording's
        Python let go of them.
        """
        cupy = self._cupy
        allocate, kept = cupy.cuda.get_allocator(), []

        def keep(size):
            block = allocate(size)
            kept.append(block)
            return block

        allocate(16 << 20)  # freed at once, left in the pool: the recording's blocks split from it, no cudaMalloc
        stream = cupy.cuda.Stream(non_blocking=True)
        with cupy.cuda.using_allocator(keep), stream, self.graph_products():
            stream.begin_capture()
            try:
                step()
            finally:
                graph = stream.end_capture()

        def replay():
            graph.launch(cupy.cuda.get_current_stream())

        replay.blocks = kept  # alive as long as the replay is
        return replay

    def _own_matmul(self, a, b, out=None, bias=None, act="identity", alpha=0.0):
        """``a @ b`` that a recording can hold, on CuPy's current stream: by cuBLAS through nvmath-python where
        ``MLP_GRAPH_PRODUCTS=cublas``, else by kernels/gemm.py, with ``act(. + bias)`` in its epilogue; a transposed
        operand is read in place."""
        from ..kernels import cublas
        from ..kernels import cuda as kernels
        from ..kernels import gemm

        def stored(x):  # (C-contiguous array, read transposed?)
            if x.flags.c_contiguous:
                return x, False
            if x.T.flags.c_contiguous:
                return x.T, True
            return self._cupy.ascontiguousarray(x), False

        (a0, trans_a), (b0, trans_b) = stored(a), stored(b)
        (m, k), n = a.shape, b.shape[1]
        c = self._cupy.empty((m, n), dtype=a.dtype) if out is None else out
        if self._graph_products == "cublas":
            if bias is not None or act != "identity":
                raise ValueError("cuBLAS products take no epilogue here: call matmul_bias_act")
            return cublas.gemm(a0, b0, c, trans_a=trans_a, trans_b=trans_b)
        splits, _ = gemm.plan(m, n, k, target_blocks=gemm.target_blocks())  # a small batch's long k, shared
        parts = self._cupy.empty((splits, m, n), dtype=a.dtype) if splits > 1 else None  # held past the launch
        gemm.gemm(kernels._dev(a0), kernels._dev(b0), kernels._dev(c), trans_a=trans_a, trans_b=trans_b,
                  bias=None if bias is None else kernels._dev(bias), act=act, alpha=alpha,
                  stream=kernels._stream(), splits=splits, workspace=None if parts is None else kernels._dev(parts))
        return c

    def upload(self, host, out):
        out.set(np.ascontiguousarray(host, dtype=out.dtype))  # straight from host memory
        return out

    @classmethod
    def stage(cls, array, buffers):
        import cupy
        import cupyx

        key = ("cupy", array.shape, array.dtype)
        if key not in buffers:  # pinned: the copies run at full bus speed
            buffers[key] = cupyx.empty_pinned(array.shape, array.dtype)
        host = buffers[key]
        array.get(out=host)  # on the current stream; MPI may only read it once the copy is done
        cupy.cuda.get_current_stream().synchronize()
        return host

    @classmethod
    def unstage(cls, host, array):
        array.set(host)

    @classmethod
    def rank_device(cls, device):
        from ..distributed import local_device

        return local_device() if device is None else device


GRAPH_PRODUCTS = ("gemm", "cublas")


def graph_products_setting() -> str:
    """``MLP_GRAPH_PRODUCTS``: who computes a recorded step's matrix products (CuPy refuses cuBLAS while recording):
    ``gemm`` (default; kernels/gemm.py) or ``cublas`` (cuBLAS through nvmath-python, kernels/cublas.py)."""
    from ..kernels import cublas

    setting = os.environ.get("MLP_GRAPH_PRODUCTS", "gemm")
    if setting not in GRAPH_PRODUCTS:
        raise ValueError(f"MLP_GRAPH_PRODUCTS must be one of {', '.join(GRAPH_PRODUCTS)}, got {setting!r}")
    if setting == "cublas" and not cublas.available():
        raise ValueError("MLP_GRAPH_PRODUCTS=cublas needs nvmath-python: pip install nvmath-python")
    return setting
