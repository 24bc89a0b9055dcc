"""The test matrix: one generator of (backend, dtype, kernels), skipping what is not installed.

array_api_strict runs on its non-default ``device1``: any NumPy-only call or allocation without
``device=`` on those arrays raises, so it detects leaks out of the Array API.
"""
import importlib.util

import numpy as np
import pytest

from mlp_backend.kernels import FUSED_MODULES

BACKEND_DEVICES = {"numpy": None, "array_api_strict": "device1", "torch": "cpu", "cupy": None}


def _has(module):
    if importlib.util.find_spec(module) is None:
        return False
    if module == "cupy":
        try:
            import cupy

            return cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:
            return False
    return True


AVAILABLE = [name for name in BACKEND_DEVICES if _has(name)]


def backend_matrix(dtypes=("float32", "float64"), kernels=("auto", "reference")):
    """pytest params for every available backend x dtype x kernel mode (fused modes only where they exist)."""
    params = []
    for name in BACKEND_DEVICES:
        for dtype in dtypes:
            for mode in kernels:
                if mode != "reference" and name not in FUSED_MODULES:
                    continue
                marks = [] if name in AVAILABLE else [pytest.mark.skip(reason=f"{name} not installed")]
                params.append(pytest.param((name, BACKEND_DEVICES[name], dtype, mode), marks=marks,
                                           id=f"{name}-{dtype}-{mode}"))
    return params


def backends(names=None):
    names = names or list(BACKEND_DEVICES)
    return [pytest.param(n, marks=[] if n in AVAILABLE else [pytest.mark.skip(reason=f"{n} not installed")], id=n)
            for n in names]


def tol(dtype):
    """(rtol, atol) derived from the dtype's precision."""
    return (1e-10, 1e-12) if dtype == "float64" else (2e-5, 1e-6)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# The CUDA-simulator tests run in their own process (test_cuda.py starts it): the simulator must be
# switched on before numba is first imported.
collect_ignore = ["cudasim"]

try:  # property tests: derandomised, so CI runs the same examples every time
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None)
    settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass
