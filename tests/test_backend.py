import mmap
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.backend import get_backend, library_name, to_numpy

from conftest import AVAILABLE, BACKEND_DEVICES, backends


def test_import_does_not_load_gpu_or_torch_or_numba():
    code = ("import sys, mlp_backend; "
            "bad = [m for m in ('cupy', 'torch', 'numba', 'numba.cuda', 'array_api_strict') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", backends())
def test_round_trip_and_device(name):
    be = get_backend(name, device=BACKEND_DEVICES[name], dtype="float64")
    x = be.asarray(np.arange(6.0).reshape(2, 3))
    assert library_name(x) == name
    np.testing.assert_array_equal(to_numpy(x), np.arange(6.0).reshape(2, 3))
    assert str(x.dtype).endswith("float64")


def test_unknown_backend_and_dtype_are_clear_errors():
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        get_backend("jax")
    with pytest.raises(ValueError, match="dtype must be one of"):
        get_backend("numpy", dtype="float16")


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch not installed")
def test_mixing_libraries_is_a_clear_error():
    import torch

    model = mlp.build_mlp([4, 3], backend="numpy")
    with pytest.raises(TypeError, match="torch array but this model lives on the 'numpy' backend"):
        model.predict(torch.zeros(2, 4))


@pytest.mark.skipif("array_api_strict" not in AVAILABLE, reason="array_api_strict not installed")
def test_mixing_devices_is_a_clear_error():
    import array_api_strict as xp

    model = mlp.build_mlp([4, 3], backend="array_api_strict", device="device1")
    x = xp.zeros((2, 4), device=xp.Device("CPU_DEVICE"))
    with pytest.raises(ValueError, match="is on device .* but this model is on"):
        model.predict(x)


def test_same_seed_same_initial_weights_on_every_backend():
    ref = mlp.build_mlp([5, 4, 3], seed=7).state_dict()
    for name in AVAILABLE:
        other = mlp.build_mlp([5, 4, 3], seed=7, backend=name, device=BACKEND_DEVICES[name]).state_dict()
        for key in ref:
            np.testing.assert_array_equal(ref[key], other[key])


def test_available_backends_lists_what_imports_here():
    found = mlp.available_backends()
    assert found[0] == "numpy"
    assert set(found) == {b for b in AVAILABLE if b in mlp.BACKENDS}


def _own_mapping(array) -> bool:
    """Whether a NumPy array's memory is a mapping of its own (``huge_page_zeros``), not NumPy's allocator's."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_large_arrays_start_on_a_huge_page_and_are_advised_for_huge_pages(name):
    """The model's flat parameters, gradients and optimizer state (read whole every step) live in memory the OS may
    back with 2 MiB pages: aligned to them, and on Linux advised for them ("hg" in the mapping's VmFlags)."""
    if name not in AVAILABLE:
        pytest.skip(f"{name} not installed")
    model = mlp.build_mlp([784, 500, 250, 100, 10], "relu", backend=name)
    opt = mlp.Adam(1e-3)
    model.fit(np.zeros((64, 784), np.float32), np.zeros(64, np.int64), optimizer=opt, epochs=1)
    for array in [model.flat_params, model.flat_grads, *opt.state.values()]:
        host = to_numpy(array)  # a torch tensor's NumPy view of the same memory
        assert host.ctypes.data % (2 << 20) == 0 and host.flags.writeable and (name == "torch" or _own_mapping(host))
    assert to_numpy(opt.state["exp_avg_sq"]).any()  # written by the updates, through the tensors too
    if name == "numpy":
        assert not _own_mapping(get_backend(name).zeros((1000,)))  # small arrays: as the library makes them
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if sys.platform != "linux" or not thp.exists() or "[never]" in thp.read_text():
        return
    address, maps = to_numpy(model.flat_params).ctypes.data, Path("/proc/self/smaps").read_text().splitlines()
    for i, line in enumerate(maps):
        first = line.split(" ", 1)[0]
        if "-" in first and ":" not in first:  # a mapping's address range
            low, high = (int(x, 16) for x in first.split("-"))
            if low <= address < high:
                flags = next(entry for entry in maps[i + 1:] if entry.startswith("VmFlags:"))
                assert " hg" in flags, flags
                return
    raise AssertionError("no mapping holds the parameters")
