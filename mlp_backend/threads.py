"""How many threads the matrix products and the parallel kernels use, and how they wait.

On a shared machine a thread that spins waiting for a partner the OS has descheduled burns the core that partner
needs: with one other busy process on 2 cores, an epoch of the default job took 3.6x its quiet time with
OpenBLAS's default spinning (about 2^28 cycles before a worker sleeps) and 1.9x with ``OPENBLAS_THREAD_TIMEOUT=4``
(16 cycles), at no cost when quiet (``bench/RESULTS.md``). OpenBLAS reads it once, when NumPy loads, so
``prepare()`` sets it (unless the environment already does) before anything here imports NumPy; a program that
imports NumPy before mlp_backend keeps OpenBLAS's default (set the variable yourself there). The thread count stays
fixed: OpenBLAS's float32 products change in their last bits with it, and a run must not depend on the load.

``MLP_THREADS=N`` (or ``mlp ... --threads N``, or :func:`limit`) caps the BLAS and Numba threads at N.
"""
from __future__ import annotations

import os

QUIET_WAITING = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def prepare():
    """Short spin-waits for OpenBLAS's threads, and ``MLP_THREADS`` as the thread count: before NumPy loads."""
    for key, value in QUIET_WAITING.items():
        os.environ.setdefault(key, value)
    forced = os.environ.get("MLP_THREADS")
    if forced:
        for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ.setdefault(key, forced)


def limit(n: int):
    """At most ``n`` threads from now on, for the BLAS (threadpoolctl) and Numba's parallel kernels."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
