"""The default model's training-step products at a batch size, each through NumPy's BLAS and through PyTorch's
(MKL / oneDNN, on the same memory through ``torch.from_numpy``), in the layouts ``fit`` uses: ``x @ W``, ``x.T @ dz``
(a transposed view) and ``dz @ W.T`` (not for the first layer). Median µs of each, both libraries at the same thread
count: how far a different BLAS would move the step's floor.

    python bench/products.py [--batch-size 64] [--threads 2]
"""
import argparse

import numpy as np
import torch
from timing import median_us

SIZES = (784, 500, 250, 100, 10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads, user_api="blas")
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.batch_size
    rows, totals = [], [0.0, 0.0]
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        x, w = rng.normal(size=(n, a)).astype(np.float32), rng.normal(size=(a, b)).astype(np.float32)
        dz = rng.normal(size=(n, b)).astype(np.float32)
        products = [(f"x @ W {n}x{a} @ {a}x{b}", x, w, np.empty((n, b), np.float32)),
                    (f"x.T @ dz {a}x{n} @ {n}x{b}", x.T, dz, np.empty((a, b), np.float32))]
        if i:
            products.append((f"dz @ W.T {n}x{b} @ {b}x{a}", dz, w.T, np.empty((n, a), np.float32)))
        for name, left, right, out in products:
            tl, tr, to = (torch.from_numpy(v) for v in (left, right, out))
            ours = median_us(lambda: np.matmul(left, right, out=out), args.repeats)
            theirs = median_us(lambda: torch.matmul(tl, tr, out=to), args.repeats)
            totals[0] += ours
            totals[1] += theirs
            rows.append((name, ours, theirs))
    print(f"| product (batch {n}, {args.threads} threads) | NumPy µs | PyTorch µs | ratio |\n|---|---:|---:|---:|")
    for name, ours, theirs in rows + [("**all**", *totals)]:
        print(f"| {name} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f} |")


if __name__ == "__main__":
    main()
