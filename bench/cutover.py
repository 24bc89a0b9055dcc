"""Where parallel Numba kernels start to beat serial ones on this machine (sets PARALLEL_MIN_ELEMENTS).

    python bench/cutover.py
"""

import numpy as np
from timing import median_us

import mlp_backend as mlp
from mlp_backend.kernels import cpu


def _record(optimizer, p):
    """The optimizer's first step record (its scalars as the update kernel reads them)."""
    optimizer.init(mlp.get_backend("numpy"), p)
    return np.asarray(optimizer.records(1)[0], dtype=p.dtype)


def main():
    print(f"{'elements':>10} {'op':<14} {'serial µs':>10} {'parallel µs':>12}")
    f = np.float32
    threads = cpu.numba.get_num_threads()
    for size in (8_000, 32_000, 65_536, 131_072, 262_144, 543_860, 1_048_576):
        p, g = np.random.rand(size).astype(f), np.random.rand(size).astype(f)
        m, v = np.zeros_like(p), np.zeros_like(p)
        for name, (serial, parallel), args, parallel_args in (
            ("adam", cpu._UPDATE["adam"], (p, g, m, v, _record(mlp.Adam(1e-3), p)), None),
            ("sgd_momentum", cpu._UPDATE["momentum"], (p, g, m, g, _record(mlp.Momentum(1e-3), p)), None),
            ("relu_backward", cpu._ACT_BACKWARD["relu"], (g, p, f(0), m, False, 1), (g, p, f(0), m, False, threads)),
        ):
            s = median_us(lambda: serial(*args), 200)
            q = median_us(lambda: parallel(*(parallel_args or args)), 200)
            print(f"{size:>10} {name:<14} {s:>10.1f} {q:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
