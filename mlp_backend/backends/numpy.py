"""NumPy arrays on the CPU: results written in place (``out=``), the Numba CPU kernels (``kernels/cpu.py``)."""
from __future__ import annotations

import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    namespace = "array_api_compat.numpy"
    fused_kernels = "cpu"
    writes_into = True
    assigns_by_index = True
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

    def check_same(self, x, what="array"):
        if not self.owns(x):
            super().check_same(x, what)

    def keep_mask(self, shape, keep, dtype, out=None, draws=None):
        if out is None or draws is None:
            return super().keep_mask(shape, keep, dtype, out)
        return mask_into(self.rng, keep, out, draws)

    def compute(self, name, *args, out=None, **kwargs):
        fn = getattr(np, name)  # NumPy itself: the same results without the wrapper's cost, no temporary
        return fn(*args, **kwargs) if out is None else fn(*args, out=out, **kwargs)

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


def mask_into(rng, keep, out, draws):
    """A dropout mask drawn into reused arrays NumPy can address: the same bits as ``(u < keep) / keep``,
    nothing allocated."""
    rng.random(out=_numpy(draws))
    mask = _numpy(out)
    np.less(_numpy(draws), keep, out=mask)
    np.multiply(mask, 1.0 / keep, out=mask)
    return out


def _numpy(x):
    """NumPy's view of an array NumPy can address (a NumPy array, or a torch CPU tensor: see torch.py)."""
    return x if isinstance(x, np.ndarray) else x.numpy()
