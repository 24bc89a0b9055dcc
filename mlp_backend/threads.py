"""How many threads the matrix products and the parallel kernels use, and how they wait.

On a shared machine a thread that spins waiting for a partner the OS has descheduled burns the core that partner
needs: with one other busy process on 2 cores, an epoch of the default job took 3.6x its quiet time with
OpenBLAS's default spinning (about 2^28 cycles before a worker sleeps) and 1.9x with ``OPENBLAS_THREAD_TIMEOUT=4``
(16 cycles), at no cost when quiet (``bench/RESULTS.md``). OpenBLAS reads it once, when NumPy loads, so
``prepare()`` sets it (unless the environment already does) before anything here imports NumPy; a program that
imports NumPy before mlp_backend keeps OpenBLAS's default (set the variable yourself there). The thread count stays
fixed during a run: OpenBLAS's float32 products change in their last bits with it, and a run must not depend on
the load.

It is chosen for the CPUs the process may use, not the machine's: its affinity mask, capped by a cgroup CPU quota
(a container started with ``--cpus 2`` on a 64-core host sees 64 cores, and 64 BLAS threads sharing two cores'
time wait on each other at every product). Where those allow fewer CPUs than the machine has, ``prepare`` sets the
BLAS, OpenMP and Numba thread counts to them. ``MLP_THREADS=N`` (or ``mlp ... --threads N``, or :func:`limit`)
caps the BLAS and Numba threads at N instead.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

QUIET_WAITING = {"OPENBLAS_THREAD_TIMEOUT": "4"}


THREAD_COUNTS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def prepare():
    """Short spin-waits for OpenBLAS's threads, and the thread count (``MLP_THREADS``, else the CPUs this process
    may use where that is fewer than the machine's): before NumPy loads. Variables already set are kept."""
    for key, value in QUIET_WAITING.items():
        os.environ.setdefault(key, value)
    count = os.environ.get("MLP_THREADS")
    if not count:
        usable = available_cpus()
        count = str(usable) if usable < (os.cpu_count() or usable) else None
    if count:
        for key in THREAD_COUNTS:
            os.environ.setdefault(key, count)


def available_cpus(cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota (rounded up)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    return count if quota is None else max(1, min(count, math.ceil(quota)))


def cgroup_cpu_quota(cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of time per period the process's cgroup allows (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us``
    / ``cpu.cfs_period_us`` in v1), or None when unlimited or unknown."""
    root = Path(cgroup_root)
    own = _own_cgroup()
    for folder in ([root / own] if own else []) + [root]:
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        except (OSError, ValueError):
            pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroup() -> str:
    """This process's cgroup v2 path relative to the hierarchy's root ("" if none or not v2)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].strip().lstrip("/")
    except OSError:
        pass
    return ""


def limit(n: int):
    """At most ``n`` threads from now on, for the BLAS (threadpoolctl) and Numba's parallel kernels."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
