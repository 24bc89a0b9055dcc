"""Argument types and the option groups several commands share (data, model and training)."""
from __future__ import annotations

import argparse

from ..backend import BACKENDS
from ..kernels import MODES
from ..kernels.activations import ACTIVATIONS
from ..optim import OPTIMIZERS

DATASETS = ["fashion-mnist", "mnist", "svhn", "cifar10", "digits", "synthetic"]
DOWNLOADABLE = ("fashion-mnist", "mnist", "svhn", "cifar10")


def sizes(text: str) -> list[int]:
    try:
        values = [int(s) for s in str(text).split(",")]  # an empty entry ("500,,100") is an error, not skipped
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def listed(kind):
    def parse(text):
        try:
            return [kind(s.strip()) for s in str(text).split(",") if s.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value
    return parse


def fraction(text):
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def fraction_or_count(text):
    """A fraction in [0, 1), or a whole number of samples (``3257``)."""
    if text.strip().isdigit():
        return int(text)
    return fraction(text)


def add_data_args(p):
    p.add_argument("--dataset", default="fashion-mnist", choices=DATASETS, help="dataset to train on")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset's files")
    p.add_argument("--download", action="store_true",
                   help="fetch MNIST, Fashion-MNIST, SVHN (train + test) or CIFAR-10 (SHA-256 checked) into "
                        "--data-dir, $MLP_DATA or ~/.cache/mlp-backend if not found")
    p.add_argument("--scaling", default="global", choices=["standard", "global", "minmax", "none"],
                   help="standardise per feature, with one global mean/std, map to [-1, 1], or keep [0, 1]")
    p.add_argument("--val-split", type=fraction_or_count, default=0.0,
                   help="fraction (0.1) or number of samples (3257) of the training set held out for validation "
                        "(stratified, seeded)")


def add_model_args(p):
    p.add_argument("--backend", default="numpy", choices=BACKENDS, help="array library to train on")
    p.add_argument("--device", default=None, help="backend device (e.g. cuda:0 for torch)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="parameter and data dtype")
    p.add_argument("--kernels", default=None, choices=MODES,
                   help="fused (auto/numba) or reference kernels (default: $MLP_KERNELS, else auto)")
    p.add_argument("--epochs", type=positive(int), default=10, help="passes over the training set")
    p.add_argument("--batch-size", type=positive(int), default=64, help="samples per mini-batch")
    p.add_argument("--lr", type=positive(float), default=1e-3, help="learning rate")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="update rule")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 in the gradient (decoupled for adamw)")
    p.add_argument("--schedule", default="constant", choices=["constant", "step", "exponential", "cosine"],
                   help="learning-rate schedule: step multiplies by --decay every --decay-epochs, exponential "
                        "by --decay every epoch (smoothly), cosine anneals to 0 over the run")
    p.add_argument("--decay", type=positive(float), default=0.5, help="factor of the step/exponential schedules")
    p.add_argument("--decay-epochs", type=positive(int), default=5, help="epochs between steps of --schedule step")
    p.add_argument("--clip-norm", type=positive(float), default=None, help="clip the gradient's global norm")
    p.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "softmax_mse"], help="training loss")
    p.add_argument("--label-smoothing", type=fraction, default=0.0, help="cross-entropy label smoothing")
    p.add_argument("--hidden", type=sizes, default=[500, 250, 100], help="hidden sizes, e.g. 500,250,100")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="hidden layers' activation")
    p.add_argument("--alpha", type=float, default=None,
                   help="the activation's parameter: leaky_relu's slope (0.01), elu's alpha (1.0)")
    p.add_argument("--batch-norm", action="store_true", help="BatchNorm1d after each hidden layer")
    p.add_argument("--dropout", type=fraction, default=0.0, help="dropout rate after each hidden layer")
    p.add_argument("--patience", type=positive(int), default=None,
                   help="stop early after this many epochs without a better validation loss (needs --val-split), "
                        "keeping the best parameters")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation, shuffling, dropout and splits")
    p.add_argument("--threads", type=positive(int), default=None,
                   help="threads for matrix products and parallel kernels, fixed for the run (default: "
                        "$MLP_THREADS, else each epoch's from the CPUs other processes leave free)")
    p.add_argument("--graph", action=argparse.BooleanOptionalAction, default=None,
                   help="replay each full batch's step as recorded once (CuPy: one CUDA graph; NumPy: its kernel "
                        "calls bound to their arrays); --no-graph runs each step's Python and launches (default: "
                        "on where the step can be recorded)")


