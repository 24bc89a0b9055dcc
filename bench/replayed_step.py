"""What replaying a full batch's step as its bound calls saves, configuration by configuration: ``fit`` with
``graph=False`` against ``graph="auto"`` on NumPy, alternating in one process (so both see the same machine), batch 64.

    python bench/replayed_step.py [--model small|default] [--epochs 4] [--steps 300] [--rounds 3]

``small`` is 16-8-8-8-10 (a step that is nearly all Python and call overhead), ``default`` the default model
784-500-250-100-10. Random data of those shapes. Prints µs per step (median of the epochs after each fit's first,
over the rounds) for each configuration, both ways, and whether their final losses are the same bits.
"""
import argparse

import numpy as np

import mlp_backend as mlp

CONFIGS = {
    "plain": {},
    "batch_norm": {"batch_norm": True},
    "layer_norm": {"layer_norm": True},
    "clip_norm": {"clip_norm": 1.0},
    "sample_weight": {"sample_weight": True},
    "check_finite_all": {"check_finite": "all"},
}


def model_for(sizes, config):
    if not config.get("layer_norm"):
        return mlp.build_mlp(sizes, "relu", seed=0, batch_norm=config.get("batch_norm", False))
    layers = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [mlp.Dense(n_in, n_out), mlp.LayerNorm(n_out), mlp.ReLU()]
    return mlp.Sequential([*layers, mlp.Dense(sizes[-2], sizes[-1])], seed=0)


def fit(sizes, config, X, y, weights, epochs, graph):
    model = model_for(sizes, config)
    history = model.fit(X, y, optimizer=mlp.Adam(1e-3, clip_norm=config.get("clip_norm")), epochs=epochs,
                        batch_size=64, sample_weight=weights if config.get("sample_weight") else None,
                        check_finite=config.get("check_finite", "loss"), threads=2, seed=0, graph=graph)
    return history.epoch_seconds[1:], history.train_loss[-1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("small", "default"), default="small")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [16, 8, 8, 8, 10] if args.model == "small" else [784, 500, 250, 100, 10]
    rng = np.random.default_rng(0)
    X = rng.random((64 * args.steps, sizes[0]), dtype=np.float32)
    y = rng.integers(0, 10, 64 * args.steps)
    weights = rng.uniform(0.5, 1.5, 64 * args.steps)
    print(f"model {'-'.join(map(str, sizes))}, batch 64, {args.steps} steps an epoch, {args.rounds} rounds")
    for name, config in CONFIGS.items():
        seconds, losses = {False: [], "auto": []}, {}
        for _ in range(args.rounds):
            for graph in (False, "auto"):
                epochs, losses[graph] = fit(sizes, config, X, y, weights, args.epochs, graph)
                seconds[graph] += epochs
        eager, replayed = (np.median(seconds[g]) / args.steps * 1e6 for g in (False, "auto"))
        print(f"{name:>17}: {eager:8.1f} -> {replayed:8.1f} µs/step ({replayed / eager:.2f}x), same loss: "
              f"{losses[False] == losses['auto']}")


if __name__ == "__main__":
    main()
