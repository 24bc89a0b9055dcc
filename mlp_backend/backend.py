"""The one place that knows array libraries: names, namespaces, devices, random numbers, transfers.

Everything else in mlp_backend receives a :class:`Backend` (or its ``xp``) and calls the Array API
standard through it. Importing this module imports neither CuPy nor torch: libraries are imported
when a backend of that name is first asked for.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

BACKENDS = ("numpy", "array_api_strict", "torch", "cupy")

# Backend name -> the module that provides its Array API namespace.
_NAMESPACE_MODULES = {
    "numpy": "array_api_compat.numpy",
    "array_api_strict": "array_api_strict",
    "torch": "array_api_compat.torch",
    "cupy": "array_api_compat.cupy",
}
_DTYPES = ("float32", "float64")


def library_name(x) -> str:
    """Backend name of an array ('numpy', 'torch', ...); raises TypeError for anything else."""
    if array_api_compat.is_numpy_array(x):
        return "numpy"
    if array_api_compat.is_torch_array(x):
        return "torch"
    if array_api_compat.is_cupy_array(x):
        return "cupy"
    if array_api_compat.is_array_api_strict_namespace(getattr(x, "__array_namespace__", lambda: None)()):
        return "array_api_strict"
    raise TypeError(f"expected an array of one of {BACKENDS}, got {type(x).__name__}")


def available_backends() -> list[str]:
    """Backends whose library imports here (CuPy also needs a working CUDA device)."""
    found = []
    for name in BACKENDS:
        try:
            get_backend(name)
        except (ImportError, RuntimeError):
            continue
        found.append(name)
    return found


def to_numpy(x) -> np.ndarray:
    """A host NumPy copy (or view, for NumPy input) of any supported array, from any device."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple, int, float, np.generic)):
        return np.asarray(x)
    name = library_name(x)
    if name == "torch":
        return x.detach().cpu().numpy()
    if name == "cupy":
        return x.get()
    if name == "array_api_strict":
        import array_api_strict

        return np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(x)


def _numpy_view(x):
    """A NumPy view of a torch CPU tensor (sharing its memory); anything else as it is."""
    return x.numpy() if type(x).__module__.startswith("torch") else x


@dataclass
class Backend:
    """An array library bound to a device, a default dtype and a seeded random generator.

    Random numbers are drawn on the host from one NumPy generator and moved to the device, so a
    seed gives the same initial weights, shuffles and dropout masks on numpy, array_api_strict and
    torch. CuPy draws dropout masks on the GPU from its own generator (seeded from the same seed).
    """

    name: str
    device: Any = None
    dtype: str = "float32"
    seed: int | None = 0
    xp: Any = field(init=False, repr=False)
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        if self.name not in BACKENDS:
            raise ValueError(f"unknown backend {self.name!r}; choose one of {', '.join(BACKENDS)}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        try:
            self.xp = importlib.import_module(_NAMESPACE_MODULES[self.name])
        except ImportError as e:
            raise ImportError(f"backend {self.name!r} needs its library installed: {e}") from e
        self.device = self._resolve_device(self.device)
        self.reseed(self.seed)
        # NumPy and CuPy take out= arguments: the hot path calls them directly (same results, no temporaries).
        # torch CPU tensors go through NumPy too, as zero-copy views (as the fused kernels take them).
        self._torch_views = self.name == "torch" and self.device.type == "cpu"
        self._has_out = self.name in ("numpy", "cupy") or self._torch_views
        self._lib = importlib.import_module("numpy" if self._torch_views else self.name) if self._has_out else None

    def _resolve_device(self, device):
        if self.name == "array_api_strict":
            import array_api_strict

            if device is None or isinstance(device, str):
                return array_api_strict.Device(device or "CPU_DEVICE")
            return device
        if self.name == "torch":
            import torch

            return torch.device(device or "cpu")
        if self.name == "cupy":
            import cupy

            try:
                return cupy.cuda.Device(device or 0)
            except cupy.cuda.runtime.CUDARuntimeError as e:  # pragma: no cover - needs a GPU box
                raise RuntimeError(f"CuPy found no usable CUDA device: {e}") from e
        if device not in (None, "cpu"):
            raise ValueError(f"numpy arrays live on the CPU only, got device {device!r}")
        return "cpu"

    # -- random numbers -------------------------------------------------------------------
    def reseed(self, seed: int | None):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._device_rng = None

    def uniform(self, shape, low, high, dtype=None):
        return self.asarray(self.rng.uniform(low, high, size=shape), dtype=dtype)

    def normal(self, shape, std, dtype=None):
        return self.asarray(self.rng.normal(0.0, std, size=shape), dtype=dtype)

    def permutation(self, n: int) -> np.ndarray:
        return self.rng.permutation(n)

    def keep_mask(self, shape, keep: float, dtype, out=None, draws=None):
        """Dropout mask in the backend's dtype: 1/keep where kept, 0 where dropped (inverted dropout).

        ``out`` (the mask) and, on NumPy, ``draws`` (float64, the uniform draws) are arrays to reuse: the
        same values, nothing allocated.
        """
        if self.name == "cupy":
            from .kernels import fused_module

            cuda_kernels = fused_module("cupy")
            if cuda_kernels is not None:  # drawn on the device from a seed the host generator gives: resumable
                return cuda_kernels.dropout_mask(self.xp, shape, keep, dtype, int(self.rng.integers(2**63)), out=out)
            if self._device_rng is None:  # numba.cuda unusable (warned): CuPy's own generator, not in checkpoints
                import cupy

                self._device_rng = cupy.random.default_rng(self.seed)
            u = self._device_rng.random(shape, dtype=dtype)
            return self.compute("divide", (u < keep).astype(dtype), keep, out=out)
        if out is not None and draws is not None and self._lib is np:  # NumPy, or torch CPU through its views
            self.rng.random(out=_numpy_view(draws))
            mask = _numpy_view(out)
            np.less(_numpy_view(draws), keep, out=mask)  # 0/1, then times 1/keep: (u < keep) / keep to the last bit
            np.multiply(mask, 1.0 / keep, out=mask)
            return out
        u = self.rng.random(shape)
        mask = self.asarray((u < keep) / keep)
        if out is None:
            return mask
        out[...] = mask
        return out

    # -- arrays ---------------------------------------------------------------------------
    def float_dtype(self, dtype=None):
        return getattr(self.xp, dtype or self.dtype)

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=self.float_dtype(dtype), device=self.device)

    def asarray(self, x, dtype=None):
        """Host data (NumPy, lists) or an array of this backend, as a float array on this device."""
        return self._convert(x, dtype or self.dtype)

    def asarray_int(self, x):
        return self._convert(x, "int64")

    def _convert(self, x, dtype: str):
        if not isinstance(x, (np.ndarray, np.generic, list, tuple, int, float)):
            self.check_same(x)
            want = getattr(self.xp, dtype)
            return x if x.dtype == want else self.xp.astype(x, want)
        x = np.asarray(x)
        if x.dtype != np.dtype(dtype):
            x = x.astype(dtype)
        if self.name == "numpy":
            return x
        return self.xp.asarray(x, device=self.device)

    def check_same(self, x, what="array"):
        """Raise a clear error when ``x`` is from another library or device than this backend."""
        name = library_name(x)
        if name != self.name:
            raise TypeError(
                f"{what} is a {name} array but this model lives on the {self.name!r} backend; "
                f"move one of them (model.to({name!r}) or convert the data)"
            )
        if self.name != "numpy" and array_api_compat.device(x) != self.device:
            raise ValueError(
                f"{what} is on device {array_api_compat.device(x)} but this model is on {self.device}"
            )

    @property
    def writes_into(self) -> bool:
        """Whether results can be written into existing arrays (``out=``: NumPy, CuPy, torch CPU tensors)."""
        return self._has_out

    def compute(self, name: str, *args, out=None, **kwargs):
        """``xp.<name>(*args, **kwargs)``, written into ``out`` when given.

        NumPy and CuPy are called directly (the same results without the wrapper's cost, and with ``out=``
        no temporary); other libraries compute a new array, copied into ``out`` when given. ``name`` must
        mean the same in the Array API and in NumPy (matmul, take, sum, multiply, argmax, equal, ...).
        """
        if self._torch_views:
            return self._through_numpy(getattr(self._lib, name), args, kwargs, out)
        if self._has_out:
            fn = getattr(self._lib, name)
            return fn(*args, **kwargs) if out is None else fn(*args, out=out, **kwargs)
        result = getattr(self.xp, name)(*args, **kwargs)
        if out is None:
            return result
        out[...] = result
        return out

    @staticmethod
    def _through_numpy(fn, args, kwargs, out):
        """``fn`` (NumPy's) on NumPy views of torch CPU tensors; the result is ``out`` or a tensor sharing memory
        with NumPy's result (a Python number stays one)."""
        import torch

        views = [_numpy_view(a) for a in args]
        if out is not None:
            fn(*views, out=out.numpy(), **kwargs)
            return out
        result = fn(*views, **kwargs)
        return torch.from_numpy(np.asarray(result)) if isinstance(result, (np.ndarray, np.generic)) else result

    def take_rows(self, a, idx, out=None):
        """Rows ``idx`` of ``a`` (the batch gather), written into ``out`` when given.

        NumPy is told the indices are in range (``mode='clip'``) when it writes into ``out``: with its default
        mode it would gather into a temporary first.
        """
        if out is not None and self._lib is np:
            return self.compute("take", a, idx, axis=0, out=out, mode="clip")
        return self.compute("take", a, idx, axis=0, out=out)

    def upload(self, host, out):
        """Host data (NumPy) written into ``out``, an existing array of this backend: one copy, no new array on
        NumPy and CuPy (CuPy copies straight from host memory)."""
        host = np.asarray(host)
        if self.name == "numpy":
            np.copyto(out, host, casting="same_kind")
        elif self.name == "cupy":
            out.set(np.ascontiguousarray(host, dtype=out.dtype))
        else:
            out[...] = self.xp.astype(self.xp.asarray(host, device=self.device), out.dtype)
        return out

    def copy(self, x, out=None):
        """A copy of ``x``: a new array, or ``x`` written into ``out``."""
        if out is None:
            return self.xp.asarray(x, copy=True)
        out[...] = x
        return out

    def state(self) -> dict:
        """The host generator's state (JSON-serialisable) for checkpoints and exact resume."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict):
        self.rng.bit_generator.state = state


class Workspace:
    """Arrays a training step reuses from one step to the next, by (owner, name, shape, dtype).

    A step that takes its arrays from here allocates nothing once it has run at a batch shape: the first run
    makes them, later runs write into them (``Backend.compute(..., out=)``). That is what replaying a step as
    a CUDA graph needs, and on the CPU it spares the allocator. Only libraries that write into existing
    arrays (``Backend.writes_into``) get arrays; elsewhere ``get`` answers None and the caller allocates.
    """

    def __init__(self, be: Backend):
        self.be = be
        self._arrays: dict = {}

    def get(self, owner, name: str, shape, dtype=None):
        if not self.be.writes_into:
            return None
        key = (id(owner), name, shape, dtype)
        array = self._arrays.get(key)
        if array is None:
            xp = self.be.xp
            array = self._arrays[key] = xp.empty(shape, dtype=dtype or self.be.float_dtype(), device=self.be.device)
        return array

    def __len__(self):
        return len(self._arrays)


def get_backend(name: str | Backend = "numpy", device=None, dtype="float32", seed: int | None = 0) -> Backend:
    """A :class:`Backend` from a name (``'numpy'``, ``'array_api_strict'``, ``'torch'``, ``'cupy'``)."""
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name or a Backend, got {type(name).__name__}")
    return Backend(name, device=device, dtype=dtype, seed=seed)
