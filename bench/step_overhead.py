"""What a training step costs beyond its arithmetic: models so small (16-10, and 16-8-8-8-10 with the default
model's four Dense layers) that a batch-64 step inside ``fit`` is nearly all Python and call overhead.

    python bench/step_overhead.py [--epochs 8] [--steps 500]

Prints µs per step (best and median epoch after the first) and the final loss (the same bits run to run).
"""
import argparse

import numpy as np

import mlp_backend as mlp


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.random((64 * args.steps, 16), dtype=np.float32)
    y = rng.integers(0, 10, 64 * args.steps)
    for sizes in ([16, 8, 8, 8, 10], [16, 10]):
        model = mlp.build_mlp(sizes, "relu", seed=0)
        history = model.fit(X, y, epochs=args.epochs, batch_size=64, threads="auto", seed=0)
        per_step = np.array(history.epoch_seconds[1:]) / args.steps * 1e6
        print(f"{'-'.join(map(str, sizes))}: best {per_step.min():.1f} µs/step, median {np.median(per_step):.1f}, "
              f"final loss {history.train_loss[-1]!r}")


if __name__ == "__main__":
    main()
