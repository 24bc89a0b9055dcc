"""NumPy arrays on the CPU: results written in place (``out=``), the Numba CPU kernels (``kernels/cpu.py``), large
arrays in memory the OS may back with huge pages."""
from __future__ import annotations

import functools
import math
import mmap

import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    namespace = "array_api_compat.numpy"
    fused_kernels = "cpu"
    writes_into = True
    assigns_by_index = True
    replays_calls = True
    communicator = "mpi"  # host memory: MPI reads it in place

    @classmethod
    def owns(cls, x) -> bool:
        return isinstance(x, np.ndarray)

    def resolve_device(self, device):
        if device not in (None, "cpu"):
            raise ValueError(f"numpy arrays live on the CPU only, got device {device!r}")
        return "cpu"

    def from_host(self, x):
        return x

    def zeros(self, shape, dtype=None):
        return huge_page_zeros(shape, self.float_dtype(dtype))

    def check_same(self, x, what="array"):
        if not self.owns(x):
            super().check_same(x, what)

    def keep_mask(self, shape, keep, dtype, out=None, draws=None):
        if out is None or draws is None:
            return super().keep_mask(shape, keep, dtype, out)
        return mask_into(self.rng, keep, out, draws)

    def bind_keep_mask(self, keep, out, draws):
        return mask_calls(self.rng, keep, out, draws)

    def compute(self, name, *args, out=None, **kwargs):
        fn = getattr(np, name)  # NumPy itself: the same results without the wrapper's cost, no temporary
        return fn(*args, **kwargs) if out is None else fn(*args, out=out, **kwargs)

    def bind(self, name, *args, out=None):
        fn = getattr(np, name)
        return functools.partial(fn, *args) if out is None else functools.partial(fn, *args, out=out)

    def take_rows(self, a, idx, out=None):
        if out is None:
            return np.take(a, idx, axis=0)
        # told the indices are in range: with its default mode NumPy gathers into a temporary first
        return np.take(a, idx, axis=0, out=out, mode="clip")

    def upload(self, host, out):
        np.copyto(out, np.asarray(host), casting="same_kind")
        return out

    def to_host_result(self, value):
        return value

    @classmethod
    def host_view(cls, array):
        return array if isinstance(array, np.ndarray) else None


HUGE_PAGE = 2 << 20  # a transparent huge page on x86-64 (and arm64 with 4 KiB pages)


def huge_page_zeros(shape, dtype) -> np.ndarray:
    """Zeros; from 1 MiB on, in a private anonymous mapping of their own, starting on a huge-page boundary and
    advised for transparent huge pages (Linux; elsewhere just aligned memory). Smaller arrays are NumPy's own.

    The model's large arrays (flat parameters and gradients, the optimizer's state) are read whole at every step:
    in 4 KiB pages the default model's four take 2,176 page translations, which a step's matrix products have
    evicted by the time the update runs; in 2 MiB pages, eight. Measured: the Adam update after the products 15-20%
    faster, steps inside ``fit`` 7-8% at batch 64 and 256 (``mlp bench``'s epochs 2-4%), the same bits
    (``bench/RESULTS.md``). NumPy advises huge pages only for allocations of 4 MiB and more. The
    mapping is released with the last array that uses it."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < HUGE_PAGE // 2 or not hasattr(mmap, "MAP_PRIVATE"):  # small, or Windows
        return np.zeros(shape, dtype)
    region = mmap.mmap(-1, -(-nbytes // HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE,
                       flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # shared memory would not get huge pages
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            region.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # a kernel without transparent huge pages
            pass
    raw = np.frombuffer(region, dtype=np.uint8)  # zero-filled by the OS; keeps the mapping alive
    start = -raw.ctypes.data % HUGE_PAGE
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def mask_into(rng, keep, out, draws):
    """A dropout mask drawn into reused arrays NumPy can address: the same bits as ``(u < keep) / keep``,
    nothing allocated."""
    for call in mask_calls(rng, keep, out, draws):
        call()
    return out


def mask_calls(rng, keep, out, draws):
    """``mask_into``'s calls, bound to these arrays and this generator."""
    draws, mask = _numpy(draws), _numpy(out)
    return (functools.partial(rng.random, out=draws), functools.partial(np.less, draws, keep, out=mask),
            functools.partial(np.multiply, mask, 1.0 / keep, out=mask))


def _numpy(x):
    """NumPy's view of an array NumPy can address (a NumPy array, or a torch CPU tensor: see torch.py)."""
    return x if isinstance(x, np.ndarray) else x.numpy()
