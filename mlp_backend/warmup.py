"""Compile every Numba CPU kernel into the on-disk cache: ``python -m mlp_backend.warmup``.

``setup.sh`` runs it so that a user's first training epoch is not a silent compile. Each op is called
through the kernel registry at a small size (serial kernels) and at the parallel cut-over (parallel
kernels), for every activation; float32 and float64 compile in two processes at once.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor


def compile_kernels(dtype: str) -> float:
    """Call each fused CPU op once per code path in ``dtype``; returns the seconds it took."""
    import array_api_compat.numpy as xp
    import numpy as np

    from .kernels import hyper, kernel_set
    from .kernels.optimizers import RULES
    from .kernels.activations import ACTIVATIONS
    from .kernels.cpu import PARALLEL_MIN_ELEMENTS

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    big = PARALLEL_MIN_ELEMENTS
    cpu = kernel_set("numpy", "numba")
    for rows, cols in ((4, 3), (big // 8, 8)):  # serial kernels, then the parallel ones
        z = rng.standard_normal((rows, cols)).astype(dtype)
        b = np.zeros(cols, dtype)
        labels = rng.integers(0, cols, rows)
        cpu.softmax_cross_entropy(xp, z, labels)
        cpu.sigmoid_binary_cross_entropy(xp, z, (z > 0).astype(dtype))
        for act in ACTIVATIONS:
            y = cpu.bias_act(xp, z.copy(), b, act, 0.1)
            cpu.act_backward(xp, z, y, act, 0.1)
            cpu.act_backward(xp, z.copy(), y, act, 0.1, out=None, bias_grad=b.copy())
            dy = z.copy()
            cpu.act_backward(xp, dy, y, act, 0.1, out=dy)
            cpu.act_backward(xp, dy, y, act, 0.1, out=dy, bias_grad=b.copy())
        p, g = z.reshape(-1).copy(), z.reshape(-1)
        for rule, entry in RULES.items():
            record = np.full(len(hyper.FIELDS[rule]), 0.5, dtype)
            record[hyper.SKIP] = 0
            states = [np.zeros_like(p) for _ in entry.state]
            cpu.optimizer_update(xp, rule, p, g, *states, *[None] * (2 - len(states)), record)
    return time.perf_counter() - start


def main() -> int:
    print("compiling the Numba CPU kernels (once; cached for later runs) ...", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        seconds = dict(zip(("float32", "float64"), pool.map(compile_kernels, ("float32", "float64"))))
    detail = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    print(f"kernels ready in {time.perf_counter() - start:.0f} s ({detail})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
