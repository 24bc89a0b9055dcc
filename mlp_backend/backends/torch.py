"""torch tensors. On the CPU they are NumPy arrays in disguise (``Tensor.numpy()`` is a zero-copy view): results
are written in place through those views, and the Numba CPU kernels take them (``kernels/torch_cpu.py``). On
CUDA, the Array API code and torch's own operations."""
from __future__ import annotations

import numpy as np

from .base import Backend
from .numpy import huge_page_zeros, mask_into


class TorchBackend(Backend):
    name = "torch"
    namespace = "array_api_compat.torch"
    fused_kernels = "torch_cpu"
    install = "pip install 'mlp-backend[torch]'"
    assigns_by_index = True  # on any device

    def __init__(self, device=None, dtype="float32", seed=0):
        super().__init__(device, dtype, seed)
        self.writes_into = self.device.type == "cpu"
        self.communicator = "mpi" if self.writes_into else "mpi-staged"

    @classmethod
    def owns(cls, x) -> bool:
        import array_api_compat

        return array_api_compat.is_torch_array(x)

    @classmethod
    def host_copy(cls, x) -> np.ndarray:
        return x.detach().cpu().numpy()

    def resolve_device(self, device):
        import torch

        try:
            resolved = torch.device(device or "cpu")
        except RuntimeError as e:
            raise ValueError(f"torch cannot use device {device!r}: {e}") from None
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"torch has no CUDA device here (device {device!r}); this torch is "
                             f"{torch.__version__}: install a CUDA build, or use --device cpu")
        return resolved

    def zeros(self, shape, dtype=None):
        if not self.writes_into:
            return super().zeros(shape, dtype)
        import torch

        # on the CPU, large arrays in huge pages as NumPy's (``numpy.huge_page_zeros``)
        return torch.from_numpy(huge_page_zeros(tuple(shape), np.dtype(dtype or self.dtype)))

    def keep_mask(self, shape, keep, dtype, out=None, draws=None):
        if self.writes_into and out is not None and draws is not None:  # into the tensors' NumPy views: NumPy's bits
            return mask_into(self.rng, keep, out, draws)
        return super().keep_mask(shape, keep, dtype, out, draws)

    def compute(self, name, *args, out=None, **kwargs):
        if not self.writes_into:
            return super().compute(name, *args, out=out, **kwargs)
        import torch

        # NumPy's function on NumPy views of the tensors; the result is ``out``, or a tensor sharing memory with
        # NumPy's (a Python number stays one)
        views = [a.numpy() if isinstance(a, torch.Tensor) else a for a in args]
        fn = getattr(np, name)
        if out is not None:
            fn(*views, out=out.numpy(), **kwargs)
            return out
        result = fn(*views, **kwargs)
        return torch.from_numpy(np.asarray(result)) if isinstance(result, (np.ndarray, np.generic)) else result

    def take_rows(self, a, idx, out=None):
        if out is not None and self.writes_into:
            np.take(a.numpy(), idx.numpy(), axis=0, out=out.numpy(), mode="clip")
            return out
        return super().take_rows(a, idx, out)

    @classmethod
    def host_view(cls, array):
        return array.detach().numpy() if array.device.type == "cpu" else None
