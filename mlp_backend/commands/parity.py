"""``mlp parity``: one epoch in float64 on every available backend and kernel set, compared to the last bit."""
from __future__ import annotations

import numpy as np

from .options import DATASETS, OPTIMIZERS, positive, sizes
from .runs import load_data

HELP = "check that every backend and kernel set trains to the same numbers"
DESCRIPTION = ("One epoch with the same seed and data order in float64 on every available backend, fused "
               "and reference kernels; exits 1 past the tolerance.")


def add_arguments(p):
    p.add_argument("--dataset", default="synthetic", choices=DATASETS, help="data to train on")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset's files")
    p.add_argument("--samples", type=positive(int), default=2000, help="training samples used")
    p.add_argument("--hidden", type=sizes, default=[64, 32], help="hidden sizes")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="update rule")
    p.add_argument("--lr", type=positive(float), default=1e-3, help="learning rate")
    p.add_argument("--epochs", type=positive(int), default=1, help="passes over the samples")
    p.add_argument("--batch-size", type=positive(int), default=64, help="samples per mini-batch")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation and shuffling")
    p.add_argument("--tol", type=float, default=1e-9, help="largest difference allowed in loss and parameters")


def run(args) -> int:
    """One epoch, same seed and data order, float64, on every available backend and kernel set; compared with
    NumPy's reference kernels. Returns 1 when any differs by more than ``--tol``."""
    from ..backend import available_backends, to_numpy
    from ..kernels import FUSED_MODULES
    from ..layers import build_mlp
    from ..optim import get_optimizer

    data = load_data(args.dataset, args.data_dir, False)
    X, y = data.X_train[:args.samples].astype(np.float64), data.y_train[:args.samples]
    X = (X - X.mean()) / (X.std() or 1.0)
    devices = {"array_api_strict": "device1"}  # its leak-detecting device
    results = []
    for backend in available_backends():
        for kernels in (["reference", "auto"] if backend in FUSED_MODULES else ["reference"]):
            model = build_mlp([X.shape[1], *args.hidden, data.num_classes], "relu", backend=backend,
                              device=devices.get(backend), dtype="float64", seed=args.seed, kernels=kernels)
            history = model.fit(X, y, optimizer=get_optimizer(args.optimizer, lr=args.lr), epochs=args.epochs,
                                batch_size=args.batch_size, seed=args.seed)
            results.append((f"{backend} / {model.ops.used}", history.train_loss[-1], to_numpy(model.flat_params)))
    _, base_loss, base_params = results[0]
    print(f"{args.epochs} epoch(s) of {X.shape[0]} {data.name} samples, float64, seed {args.seed}, {args.optimizer}; "
          f"against {results[0][0]}")
    print(f"{'backend / kernels':<42} {'final train loss':>22} {'|loss diff|':>12} {'max |param diff|':>17}")
    worst = 0.0
    for name, loss, params in results:
        loss_diff, param_diff = abs(loss - base_loss), float(np.max(np.abs(params - base_params)))
        worst = max(worst, loss_diff, param_diff)
        print(f"{name:<42} {loss:>22.17g} {loss_diff:>12.3g} {param_diff:>17.3g}")
    verdict = "agree" if worst <= args.tol else "DIFFER"
    print(f"{len(results)} implementations {verdict}: largest difference {worst:.3g} (tolerance {args.tol:g})")
    return 0 if worst <= args.tol else 1
