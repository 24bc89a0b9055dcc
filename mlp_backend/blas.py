"""OpenBLAS's AVX-512 kernels where its own CPU detection misses them.

NumPy's bundled OpenBLAS picks its matrix kernels from the CPU's identity. On an AMD CPU it does not recognise
(this project's development machines report a bare "AMD EPYC" with AVX-512) it falls back to its AVX2 kernels,
'Haswell', at about half the speed: sgemm 243 -> 464 GFLOP/s and one epoch of the default job 1.04 -> 0.68 s
(batch 64) measured here (bench/RESULTS.md). OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when it loads, that is
when NumPy is first imported; so ``mlp_backend`` calls ``prefer_avx512_kernels`` before it imports NumPy, and it
changes nothing when NumPy is already loaded, when the variable is set (set it yourself to choose, e.g.
``OPENBLAS_CORETYPE=Haswell`` to opt out), or when the CPU lacks what the SkylakeX kernels need.
"""
from __future__ import annotations

import os
import sys

# What OpenBLAS's SkylakeX kernels use: AVX-512 Foundation, Byte/Word, Doubleword/Quadword and Vector Length.
NEEDED_FLAGS = frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl"})


def avx512_core_for(cpuinfo: str) -> str | None:
    """'SkylakeX' for an AMD CPU with the AVX-512 OpenBLAS needs (``/proc/cpuinfo``'s text), else None.

    Intel CPUs are left to OpenBLAS, which knows its AVX-512 ones (and has finer kernels for some).
    """
    vendor = flags = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key == "flags" and flags is None:
            flags = set(value.split())
    if vendor == "AuthenticAMD" and flags is not None and NEEDED_FLAGS <= flags:
        return "SkylakeX"
    return None


def prefer_avx512_kernels(environ=os.environ, cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
    """Set ``OPENBLAS_CORETYPE`` in ``environ`` where it helps and can still act; returns what it set, or None."""
    if "OPENBLAS_CORETYPE" in environ or "numpy" in sys.modules:
        return None
    try:
        with open(cpuinfo_path) as f:
            core = avx512_core_for(f.read())
    except OSError:  # not Linux: OpenBLAS's own choice
        return None
    if core is not None:
        environ["OPENBLAS_CORETYPE"] = core
    return core
