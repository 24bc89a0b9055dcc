"""The host's time per step in graph mode: fit's loop with a replay that costs nothing (NumPy standing in for a
recording backend, its "graph" a no-op), so what remains is Python's bookkeeping around each replay. Below a GPU
step's time, replaying K steps per graph launch would gain nothing.

    python bench/graph_host_floor.py [--batch-size 64] [--epochs 3]
"""
import argparse

import numpy as np

import mlp_backend as mlp
from mlp_backend.backends.numpy import NumpyBackend


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    NumpyBackend.records_graphs = True
    NumpyBackend.capture = lambda be, step: (lambda: None)  # every full batch after the first: no work at all
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60000, 784)).astype(np.float32), rng.integers(0, 10, 60000)
    model = mlp.build_mlp([784, 500, 250, 100, 10], "relu", seed=0)
    history = model.fit(X, y, optimizer=mlp.Adam(1e-3), epochs=args.epochs, batch_size=args.batch_size, graph=True)
    steps = -(-X.shape[0] // args.batch_size)
    for epoch, seconds in enumerate(history.epoch_seconds, 1):  # the first holds the eager first step and recording
        print(f"epoch {epoch}: {seconds * 1e3:.1f} ms, {seconds / steps * 1e6:.1f} µs per step")


if __name__ == "__main__":
    main()
