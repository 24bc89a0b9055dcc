"""How many threads the matrix products and the parallel kernels use, and how they wait.

How OpenBLAS's idle workers wait (``OPENBLAS_THREAD_TIMEOUT``: 2^n cycles of spinning before a worker sleeps)
depends on who chooses the thread count. With a fixed count on a shared machine, a worker that spins waiting for a
partner the OS has descheduled burns the core that partner needs: beside one other busy process on 2 cores, an epoch
of the default job took 3.6x its quiet time with OpenBLAS's default (2^28 cycles) and 1.9x with 2^4 (16 cycles, at
once). Where the count follows the load (the ``mlp`` command without ``--threads`` / ``MLP_THREADS``: see below),
there is no descheduled partner to wait for, and a sleeping worker costs a wake-up at every product instead: 2^20
cycles (about 0.3 ms, longer than the gap between a step's products) made its batch-64 epoch 14% faster than 2^4
(``bench/RESULTS.md``). OpenBLAS reads the variable once, when NumPy loads, so ``prepare()`` sets it (unless the
environment already does) before anything here imports NumPy; a program that imports NumPy before mlp_backend keeps
OpenBLAS's default (set the variable yourself there).

The count is chosen for the CPUs the process may use, not the machine's: its affinity mask, capped by a cgroup CPU
quota (a container started with ``--cpus 2`` on a 64-core host sees 64 cores, and 64 BLAS threads sharing two
cores' time wait on each other at every product). Where those allow fewer CPUs than the machine has, ``prepare``
sets the BLAS, OpenMP and Numba thread counts to them. ``MLP_THREADS=N`` (or ``mlp ... --threads N``, or
:func:`limit`) sets N instead.

Under load no fixed count is right: with one other busy process on 2 cores, two BLAS threads made an epoch 3.7x
slower than quiet (each product waits for the thread that shares a core with the other process) while one thread
lost 8%, and quiet, one thread is 1.3x slower than two (``bench/RESULTS.md``). :class:`LoadGovernor` picks each
epoch's count from the CPU time other processes took during the last one (``fit(threads="auto")``, which ``mlp
train`` and ``mlp bench`` use unless a count is given). OpenBLAS's float32 products change in their last bits with
the count, so a run meant to be reproduced bit for bit fixes it (``--threads N``, ``MLP_THREADS``); a run's
counts are in its history (``History.threads``, history.csv).
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

SPIN_FIXED_COUNT, SPIN_FOLLOWING_LOAD = "4", "20"  # OPENBLAS_THREAD_TIMEOUT for each (see above)


THREAD_COUNTS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def prepare(argv: list[str] | None = None):
    """How OpenBLAS's threads wait, and the thread count (``MLP_THREADS``, else the CPUs this process may use where
    that is fewer than the machine's): before NumPy loads. Variables already set are kept."""
    follows_load = command_follows_load(getattr(sys, "argv", []) if argv is None else argv)
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", SPIN_FOLLOWING_LOAD if follows_load else SPIN_FIXED_COUNT)
    count = os.environ.get("MLP_THREADS")
    if not count:
        usable = available_cpus()
        count = str(usable) if usable < (os.cpu_count() or usable) else None
    if count:
        for key in THREAD_COUNTS:
            os.environ.setdefault(key, count)


def default_setting() -> str | None:
    """``fit``'s ``threads`` for the command line: "auto" (each epoch's count from the load) unless ``MLP_THREADS``
    fixes the count."""
    return None if os.environ.get("MLP_THREADS") else "auto"


def command_follows_load(argv: list[str]) -> bool:
    """Whether this process is the ``mlp`` command choosing each epoch's thread count from the load (no
    ``--threads``, no ``MLP_THREADS``): known from its arguments, since OpenBLAS must be told before it loads.
    ``mlp bench``'s workers inherit the command's setting through the environment."""
    fixed = any(a == "--threads" or a.startswith("--threads=") for a in argv[1:])
    return bool(argv) and Path(argv[0]).name == "mlp" and not fixed and default_setting() == "auto"


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
    """At most ``n`` threads from now on, for the BLAS (threadpoolctl) and Numba's parallel kernels.

    Returns
    -------
    callable
        Restores the counts from before the call.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    from threadpoolctl import threadpool_limits
    import numba

    blas, before = threadpool_limits(limits=n, user_api="blas"), numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

    def restore():
        blas.restore_original_limits()
        numba.set_num_threads(before)
    return restore


class LoadGovernor:
    """Thread counts that follow the CPUs other processes leave free: the usable CPUs (:func:`available_cpus`)
    less the CPU time others took since the last call (``/proc/stat``'s busy time less this process's own), in
    whole CPUs, at least one. The first call, with nothing measured yet, counts the running threads of other
    processes: all running threads less this process's own (its BLAS workers may be spinning).

    Parameters
    ----------
    most : int, optional
        The largest count (default: :func:`available_cpus`).
    stat : str or os.PathLike, default "/proc/stat"
        The kernel's CPU statistics (Linux); without them the count stays ``most``.
    tasks : str or os.PathLike, default "/proc/self/task"
        This process's threads (Linux); without them the caller is its only running thread.
    """

    def __init__(self, most: int | None = None, stat: str | os.PathLike = "/proc/stat",
                 tasks: str | os.PathLike = "/proc/self/task"):
        self.most = most or available_cpus()
        self.stat, self.tasks = Path(stat), Path(tasks)
        self.clock, self.cpu_clock = time.perf_counter, time.process_time  # wall and this process's CPU seconds
        self._last = None

    def count(self) -> int:
        """The thread count for what runs next.

        Returns
        -------
        int
            Between 1 and ``most``.
        """
        now = self._sample()
        if now is None:
            return self.most
        if self._last is None:
            others = max(0, now[3] - self._own_running())
        else:
            wall = now[0] - self._last[0]
            others = ((now[1] - self._last[1]) - (now[2] - self._last[2])) / wall if wall > 0 else 0.0
        self._last = now
        return max(1, min(self.most, self.most - round(max(0.0, others))))

    def _own_running(self) -> int:
        """This process's running threads (state R in ``/proc/self/task/*/stat``), the caller's among them."""
        try:
            states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in self.tasks.iterdir()]
        except (OSError, IndexError):
            return 1
        return max(1, states.count("R"))

    def _sample(self):
        """(wall seconds, busy CPU seconds of every process, this process's CPU seconds, running threads)."""
        try:
            lines = self.stat.read_text().splitlines()
            ticks = [int(v) for v in lines[0].split()[1:9]]
            running = next(int(line.split()[1]) for line in lines if line.startswith("procs_running"))
        except (OSError, ValueError, IndexError, StopIteration):
            return None
        busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait: steal is time taken from us too
        return self.clock(), busy / os.sysconf("SC_CLK_TCK"), self.cpu_clock(), running
