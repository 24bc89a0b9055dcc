"""``mlp gradcheck``: a small model's analytic gradients against float64 finite differences."""
from __future__ import annotations

import numpy as np

from .options import ACTIVATIONS, BACKENDS, fraction, positive, sizes

HELP = "check analytic gradients against float64 finite differences"


def add_arguments(p):
    p.add_argument("--sizes", type=sizes, default=[6, 5, 4, 3], help="layer sizes, input to output")
    p.add_argument("--activation", default="tanh", choices=ACTIVATIONS, help="hidden layers' activation")
    p.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "softmax_mse", "mse", "bce"],
                   help="loss the gradients are of")
    p.add_argument("--samples", type=positive(int), default=8, help="random inputs checked")
    p.add_argument("--batch-norm", action="store_true", help="BatchNorm1d after each hidden layer")
    p.add_argument("--dropout", type=fraction, default=0.0, help="dropout rate (a fixed mask is checked)")
    p.add_argument("--backend", default="numpy", choices=BACKENDS, help="array library")
    p.add_argument("--seed", type=int, default=0, help="seeds the model and the inputs")


def run(args) -> int:
    import mlp_backend as mlp

    rng = np.random.default_rng(args.seed)
    X = rng.normal(size=(args.samples, args.sizes[0]))
    out = args.sizes[-1]
    y = {"mse": rng.normal(size=(args.samples, out)), "bce": rng.integers(0, 2, (args.samples, out))}.get(
        args.loss, rng.integers(0, out, args.samples))
    model = mlp.build_mlp(args.sizes, args.activation, batch_norm=args.batch_norm, dropout=args.dropout,
                          backend=args.backend, dtype="float64", seed=args.seed)
    result = mlp.check_model_gradients(model, X, y, args.loss)
    print(result)
    return 0 if result.ok else 1
