"""Compile the Numba CPU kernels into the on-disk cache: ``python -m mlp_backend.warmup [--all]``.

``setup.sh`` runs it so that a user's first training epoch is not a silent compile. Each group of kernels (the
losses with the step's bookkeeping, the normalisation layers', each activation's two passes, each optimizer rule) is
called through the kernel registry in float32 and float64, on one process per core, with a line as each group is
ready: ``[k/n] float32 relu (12 s)``. By default the serial kernels, which every batch below the parallel cut-over
uses (the default job's all); ``--all`` also the parallel ones, which otherwise compile (once, cached) the first time
an array of a million elements or more meets them.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed


def groups() -> list[str]:
    """The kernel groups, each compiled by one task."""
    from .kernels.activations import ACTIVATIONS
    from .kernels.optimizers import RULES

    return ["losses", "normalisation", *ACTIVATIONS, *(f"optimizer {rule}" for rule in RULES)]


def compile_group(group: str, dtype: str, parallel: bool = False) -> str:
    """Call the fused CPU ops of ``group`` once per code path in ``dtype`` (serial, and with ``parallel`` the
    parallel twins too)."""
    import array_api_compat.numpy as xp
    import numpy as np

    from .kernels import fpenv, hyper, kernel_set
    from .kernels.cpu import PARALLEL_MIN_ELEMENTS
    from .kernels.optimizers import RULES

    rng = np.random.default_rng(0)
    cpu = kernel_set("numpy", "numba")
    for rows, cols in ((4, 3), (PARALLEL_MIN_ELEMENTS // 8, 8))[:2 if parallel else 1]:  # serial, then parallel
        z = rng.standard_normal((rows, cols)).astype(dtype)
        b = np.zeros(cols, dtype)
        if group == "losses":
            with fpenv.subnormals_flushed():  # fit's floating-point setting
                pass
            cpu.softmax_cross_entropy(xp, z, rng.integers(0, cols, rows))
            cpu.sigmoid_binary_cross_entropy(xp, z, (z > 0).astype(dtype))
            order = np.arange(rows, dtype=np.int64)  # labels too
            cpu.gather_batch(xp, z, order, order, np.zeros(1, np.int64), rows, 0, rows,
                             np.zeros(rows, np.int64), np.empty_like(z), np.zeros(rows, np.int64))
            cpu.count_correct(xp, z, order, np.zeros(1, np.int64), np.zeros(1, np.int64))
            cpu.count_correct(xp, z, z, np.zeros(1, np.int64), np.zeros(1, np.int64))
            cpu.l2_penalty(xp, z, z.copy(), 1e-4, np.empty_like(z))
            records = np.zeros((rows, len(hyper.FIELDS["adam"])), dtype)  # an update's record: the skip slot too
            cpu.record_step(xp, z[0, 0].reshape(()), np.zeros(1, np.int64), np.zeros(rows, dtype), records[0].copy(),
                            records, flags=np.zeros(rows, np.int8), bad=np.zeros((), dtype))
        elif group == "normalisation":  # BatchNorm1d's (with running statistics) and LayerNorm's
            gamma = np.ones(cols, dtype)
            for axis in (0, 1):
                y, xhat, inv_std = cpu.norm_forward(xp, z, gamma, b, 1e-5, axis,
                                                    (b.copy(), gamma.copy(), 0.1) if axis == 0 else None)
                cpu.norm_backward(xp, z, xhat, inv_std, gamma, axis, b.copy(), b.copy())
        elif group.startswith("optimizer "):
            rule = group.split()[1]
            p, g = z.reshape(-1).copy(), z.reshape(-1)
            record = np.full(len(hyper.FIELDS[rule]), 0.5, dtype)
            record[hyper.SKIP] = 0
            states = [np.zeros_like(p) for _ in RULES[rule].state]
            cpu.optimizer_update(xp, rule, p, g, *states, *[None] * (2 - len(states)), record)
        else:
            y = cpu.bias_act(xp, z.copy(), b, group, 0.1)
            cpu.act_backward(xp, z, y, group, 0.1)
            cpu.act_backward(xp, z.copy(), y, group, 0.1, out=None, bias_grad=b.copy())
            dy = z.copy()
            cpu.act_backward(xp, dy, y, group, 0.1, out=dy)
            cpu.act_backward(xp, dy, y, group, 0.1, out=dy, bias_grad=b.copy())
    return f"{dtype} {group}"


def main(argv=None) -> int:
    parallel = "--all" in (sys.argv[1:] if argv is None else argv)
    tasks = [(group, dtype, parallel) for dtype in ("float32", "float64") for group in groups()]
    print(f"compiling the Numba CPU kernels: {len(tasks)} groups (once; cached for later runs)", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(len(tasks), os.cpu_count() or 1)) as pool:
        futures = [pool.submit(compile_group, *task) for task in tasks]
        for k, future in enumerate(as_completed(futures), 1):
            print(f"[{k}/{len(tasks)}] {future.result()} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"kernels ready in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
