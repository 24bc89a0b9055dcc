"""Where parallel Numba kernels start to beat serial ones on this machine (sets PARALLEL_MIN_ELEMENTS).

    python bench/cutover.py
"""

import numpy as np
from timing import median_us

from mlp_backend.kernels import cpu


def main():
    print(f"{'elements':>10} {'op':<14} {'serial µs':>10} {'parallel µs':>12}")
    f = np.float32
    for size in (8_000, 32_000, 65_536, 131_072, 262_144, 1_048_576):
        p, g = np.random.rand(size).astype(f), np.random.rand(size).astype(f)
        m, v = np.zeros_like(p), np.zeros_like(p)
        adam = np.array([1e-3, 0.0, 1.0, np.inf, 0.0, 0.9, 0.1, 0.999, 0.001, 1e-8, 1e-3, 1.0, 1.0], f)
        sgd = np.array([1e-3, 0.0, 1.0, np.inf, 0.0, 0.9], f)
        threads = cpu.numba.get_num_threads()
        for name, (serial, parallel), args, parallel_args in (
            ("adam", cpu._ADAM, (p, g, m, v, adam), None),
            ("sgd_momentum", cpu._SGD, (p, g, m, sgd, False, True), None),
            ("relu_backward", cpu._ACT_BACKWARD["relu"], (g, p, f(0), m, False, 1), (g, p, f(0), m, False, threads)),
        ):
            s = median_us(lambda: serial(*args), 200)
            q = median_us(lambda: parallel(*(parallel_args or args)), 200)
            print(f"{size:>10} {name:<14} {s:>10.1f} {q:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
