"""The ``mlp`` command line: ``mlp train`` trains the default model on Fashion-MNIST."""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .backend import BACKENDS
from .kernels import MODES
from .optim import OPTIMIZERS

DEFAULT_HIDDEN = "500,250,100"


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"hidden sizes must be comma-separated integers, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlp", description="Train multi-layer perceptrons on any Array API backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an MLP and report test accuracy",
                           description="Train an MLP (default: 784-500-250-100-10 ReLU, Adam 1e-3, batch 64, "
                                       "Fashion-MNIST) and report the test accuracy.")
    train.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist", "digits", "synthetic"])
    train.add_argument("--data-dir", default=None, help="directory holding the dataset's IDX files")
    train.add_argument("--backend", default="numpy", choices=BACKENDS)
    train.add_argument("--device", default=None, help="backend device (e.g. cuda:0 for torch)")
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    train.add_argument("--kernels", default=None, choices=MODES, help="fused (auto/numba) or reference kernels")
    train.add_argument("--epochs", type=_positive(int), default=10)
    train.add_argument("--batch-size", type=_positive(int), default=64)
    train.add_argument("--lr", type=_positive(float), default=1e-3)
    train.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    train.add_argument("--hidden", type=_sizes, default=_sizes(DEFAULT_HIDDEN), help="hidden sizes, e.g. 500,250,100")
    train.add_argument("--activation", default="relu")
    train.add_argument("--dropout", type=float, default=0.0)
    train.add_argument("--val-split", type=float, default=0.0,
                       help="fraction of the training set held out for validation (0 for none)")
    train.add_argument("--scaling", default="global", choices=["standard", "global", "none"],
                       help="standardise per feature, with one global mean/std, or keep pixels in [0, 1]")
    train.add_argument("--restore-best", action="store_true", help="end with the best-validation parameters")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--json", metavar="PATH", default=None, help="write a JSON summary of the run")
    train.add_argument("--quiet", action="store_true", help="print only the final result")
    bench = sub.add_parser("bench", help="time the default job on every backend against native PyTorch",
                           description="Time the default model on each available implementation and batch size "
                                       "against native PyTorch and the GEMM floor.")
    from .bench import add_arguments

    add_arguments(bench)
    return parser


def train_command(args) -> dict:
    from .data import Standardizer, load_dataset, stratified_split
    from .layers import build_mlp
    from .metrics import classification_report

    data = load_dataset(args.dataset, args.data_dir)
    X, y = data.X_train, data.y_train
    validation = None
    if args.val_split:
        keep, held = stratified_split(y, args.val_split, args.seed)
        X, y, Xv, yv = X[keep], y[keep], X[held], y[held]
    X_test = data.X_test
    if args.scaling != "none":
        scaler = Standardizer(per_feature=args.scaling == "standard").fit(X)
        X, X_test = scaler.transform(X), scaler.transform(X_test)
        if args.val_split:
            Xv = scaler.transform(Xv)
    if args.val_split:
        validation = (Xv, yv)
    model = build_mlp([data.num_features, *args.hidden, data.num_classes], args.activation, dropout=args.dropout,
                      backend=args.backend, device=args.device, dtype=args.dtype, seed=args.seed,
                      kernels=args.kernels)
    if not args.quiet:
        print(f"{data.name}: {X.shape[0]} train, {0 if validation is None else validation[0].shape[0]} validation, "
              f"{X_test.shape[0]} test samples from {data.source}")
        print(model.summary())

    def report(epoch, logs):
        if args.quiet:
            return
        parts = [f"epoch {logs['epoch']:>3}/{args.epochs}", f"loss {logs['train_loss']:.4f}",
                 f"acc {logs['train_accuracy']:.4f}"]
        if "val_loss" in logs:
            parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_accuracy']:.4f}"]
        parts.append(f"{logs['seconds']:.2f}s")
        print("  ".join(parts), flush=True)

    from .optim import get_optimizer

    start = time.perf_counter()
    history = model.fit(X, y, optimizer=get_optimizer(args.optimizer, lr=args.lr), epochs=args.epochs,
                        batch_size=args.batch_size, seed=args.seed, validation_data=validation,
                        restore_best=args.restore_best, on_epoch=report)
    wall = time.perf_counter() - start
    scores = model.evaluate(X_test, data.y_test)
    summary = {
        "dataset": data.name, "backend": args.backend, "dtype": args.dtype, "kernels": model.ops.mode,
        "epochs": len(history.train_loss), "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
        "final_train_loss": history.train_loss[-1], "train_loss": history.train_loss,
        "val_loss": history.val_loss, "val_accuracy": history.val_accuracy,
        "epoch_seconds": history.epoch_seconds, "train_seconds": wall,
    }
    if not args.quiet:
        print(classification_report(data.y_test, model.predict(X_test), class_names=data.class_names))
    print(f"test accuracy {scores['accuracy']:.4f}  test loss {scores['loss']:.4f}  "
          f"({sum(history.epoch_seconds):.1f}s training, {args.backend}, kernels={model.ops.mode})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            train_command(args)
        elif args.command == "bench":
            from .bench import bench_command

            bench_command(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, FloatingPointError) as e:
        print(f"mlp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlp: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
