"""OpenBLAS's AVX-512 kernels chosen where its detection misses them, and only there."""
import subprocess
import sys
from pathlib import Path

import pytest

from mlp_backend.blas import avx512_core_for, prefer_avx512_kernels

AVX512 = "fpu sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl"


def cpuinfo(vendor, flags):
    return f"processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize("vendor,flags,expected", [
    ("AuthenticAMD", AVX512, "SkylakeX"),
    ("AuthenticAMD", AVX512.replace(" avx512vl", ""), None),  # a kernel needs every one of the four
    ("AuthenticAMD", "fpu sse2 avx avx2 fma", None),
    ("GenuineIntel", AVX512, None),  # OpenBLAS knows Intel's own
])
def test_the_kernels_follow_the_cpu(vendor, flags, expected):
    assert avx512_core_for(cpuinfo(vendor, flags)) == expected
    assert avx512_core_for("") is None


def test_it_sets_the_variable_only_where_it_can_still_act(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(cpuinfo("AuthenticAMD", AVX512))
    env = {}
    assert prefer_avx512_kernels(env, str(info)) is None  # NumPy is loaded here: too late to matter
    monkeypatch.delitem(sys.modules, "numpy")
    assert prefer_avx512_kernels(env, str(info)) == "SkylakeX" and env == {"OPENBLAS_CORETYPE": "SkylakeX"}
    chosen = {"OPENBLAS_CORETYPE": "Haswell"}  # the user's choice stands
    assert prefer_avx512_kernels(chosen, str(info)) is None and chosen == {"OPENBLAS_CORETYPE": "Haswell"}
    assert prefer_avx512_kernels({}, str(tmp_path / "missing")) is None


def test_importing_mlp_backend_first_gives_numpy_those_kernels():
    """In a fresh process: the kernels OpenBLAS reports are the ones chosen for this machine's CPU."""
    code = ("import os, mlp_backend, threadpoolctl; print(os.environ.get('OPENBLAS_CORETYPE')); "
            "print([i.get('architecture') for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'])")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_CORETYPE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    chosen, reported = done.stdout.split("\n")[:2]
    path = Path("/proc/cpuinfo")
    expected = avx512_core_for(path.read_text()) if path.exists() else None
    assert chosen == str(expected)
    if expected is not None and reported != "[]":  # NumPy built on OpenBLAS (as its wheels are)
        assert reported == f"['{expected}']"
