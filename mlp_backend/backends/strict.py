"""array-api-strict: the standard and nothing more, on any of its devices (``Device("device1")`` is the leak
detector: a NumPy call on its arrays raises). The reference kernels only."""
from __future__ import annotations

import numpy as np

from .base import Backend


class StrictBackend(Backend):
    name = "array_api_strict"
    namespace = "array_api_strict"
    install = "pip install 'mlp-backend[strict]'"

    @classmethod
    def owns(cls, x) -> bool:
        return type(x).__module__.startswith("array_api_strict")

    @classmethod
    def host_copy(cls, x) -> np.ndarray:
        import array_api_strict

        return np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE")))

    def resolve_device(self, device):
        import array_api_strict

        if device is None or isinstance(device, str):
            return array_api_strict.Device(device or "CPU_DEVICE")
        return device
