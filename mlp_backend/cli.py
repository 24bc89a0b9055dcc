"""The ``mlp`` command line.

``mlp train`` (default: 784-500-250-100-10 ReLU, Adam 1e-3, batch 64, Fashion-MNIST) writes a run folder;
``evaluate``, ``sweep``, ``plot``, ``gradcheck``, ``datasets`` and ``bench`` do the rest of the coursework.
Options may come from a TOML file (``--config``); flags given on the command line win.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .backend import BACKENDS
from .kernels import MODES
from .kernels.activations import ACTIVATIONS
from .optim import OPTIMIZERS
from .progress import Progress

DATASETS = ["fashion-mnist", "mnist", "svhn", "cifar10", "digits", "synthetic"]
DOWNLOADABLE = ("fashion-mnist", "mnist", "svhn", "cifar10")


def _ints(text: str) -> list[int]:
    try:
        values = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def _list(kind):
    def parse(text):
        try:
            return [kind(s.strip()) for s in str(text).split(",") if s.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


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


def _fraction(text):
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _fraction_or_count(text):
    """A fraction in [0, 1), or a whole number of samples (``3257``)."""
    if text.strip().isdigit():
        return int(text)
    return _fraction(text)


def _add_data_args(p):
    p.add_argument("--dataset", default="fashion-mnist", choices=DATASETS, help="dataset to train on")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset's files")
    p.add_argument("--download", action="store_true",
                   help="fetch MNIST, Fashion-MNIST, SVHN (train + test) or CIFAR-10 (SHA-256 checked) into "
                        "--data-dir, $MLP_DATA or ~/.cache/mlp-backend if not found")
    p.add_argument("--scaling", default="global", choices=["standard", "global", "minmax", "none"],
                   help="standardise per feature, with one global mean/std, map to [-1, 1], or keep [0, 1]")
    p.add_argument("--val-split", type=_fraction_or_count, default=0.0,
                   help="fraction (0.1) or number of samples (3257) of the training set held out for validation "
                        "(stratified, seeded)")


def _add_model_args(p):
    p.add_argument("--backend", default="numpy", choices=BACKENDS, help="array library to train on")
    p.add_argument("--device", default=None, help="backend device (e.g. cuda:0 for torch)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="parameter and data dtype")
    p.add_argument("--kernels", default=None, choices=MODES,
                   help="fused (auto/numba) or reference kernels (default: $MLP_KERNELS, else auto)")
    p.add_argument("--epochs", type=_positive(int), default=10, help="passes over the training set")
    p.add_argument("--batch-size", type=_positive(int), default=64, help="samples per mini-batch")
    p.add_argument("--lr", type=_positive(float), default=1e-3, help="learning rate")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="update rule")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 in the gradient (decoupled for adamw)")
    p.add_argument("--schedule", default="constant", choices=["constant", "step", "exponential", "cosine"],
                   help="learning-rate schedule: step multiplies by --decay every --decay-epochs, exponential "
                        "by --decay every epoch (smoothly), cosine anneals to 0 over the run")
    p.add_argument("--decay", type=_positive(float), default=0.5, help="factor of the step/exponential schedules")
    p.add_argument("--decay-epochs", type=_positive(int), default=5, help="epochs between steps of --schedule step")
    p.add_argument("--clip-norm", type=_positive(float), default=None, help="clip the gradient's global norm")
    p.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "softmax_mse"], help="training loss")
    p.add_argument("--label-smoothing", type=_fraction, default=0.0, help="cross-entropy label smoothing")
    p.add_argument("--hidden", type=_ints, default=[500, 250, 100], help="hidden sizes, e.g. 500,250,100")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="hidden layers' activation")
    p.add_argument("--alpha", type=float, default=None,
                   help="the activation's parameter: leaky_relu's slope (0.01), elu's alpha (1.0)")
    p.add_argument("--batch-norm", action="store_true", help="BatchNorm1d after each hidden layer")
    p.add_argument("--dropout", type=_fraction, default=0.0, help="dropout rate after each hidden layer")
    p.add_argument("--patience", type=_positive(int), default=None,
                   help="stop early after this many epochs without a better validation loss (needs --val-split), "
                        "keeping the best parameters")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation, shuffling, dropout and splits")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlp", description="Train multi-layer perceptrons on any Array API backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    original_add_parser = sub.add_parser

    def add_parser(name, **kwargs):  # every command's --help shows each option's default
        return original_add_parser(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)
    sub.add_parser = add_parser

    train = sub.add_parser("train", help="train an MLP, write a run folder, report test accuracy",
                           description="Train an MLP (default: 784-500-250-100-10 ReLU, Adam 1e-3, batch 64, "
                                       "Fashion-MNIST) and write a run folder with metrics, plots and a report.")
    train.add_argument("--config", default=None, help="TOML file of options (keys as the long flags)")
    _add_data_args(train)
    _add_model_args(train)
    train.add_argument("--restore-best", action="store_true", help="end with the best-validation parameters")
    train.add_argument("--checkpoint-every", type=_positive(int), default=None,
                       help="also write RUN_DIR/checkpoint.safetensors every N steps (always after each epoch)")
    train.add_argument("--resume", metavar="RUN_DIR", default=None,
                       help="continue the run in RUN_DIR from its last checkpoint (only --epochs may change)")
    train.add_argument("--out", default=None, help="run folder (default runs/<time>-<dataset>)")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    train.add_argument("--distributed", nargs="?", const="mpi", default=None,
                       choices=["mpi", "mpi-staged", "mpi-cuda", "nccl"],
                       help="data-parallel over the processes of an MPI launch: mpiexec -n N mlp train --distributed "
                            "(--batch-size is the global batch; rank 0 writes the run folder; with --backend cupy each "
                            "rank takes the GPU of its rank on its node). 'mpi' picks how arrays travel: NCCL for "
                            "CuPy where it can, else CUDA-aware MPI, else host staging; name one to force it")
    train.add_argument("--checkpoint", default=None, help="checkpoint path (default RUN_DIR/model.safetensors)")
    train.add_argument("--json", metavar="PATH", default=None, help="also write the summary JSON here")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--quiet", action="store_true", help="print only the final result")

    evaluate = sub.add_parser("evaluate", help="evaluate a saved model on a dataset's test split")
    evaluate.add_argument("run", nargs="?", default=None, metavar="RUN_DIR_OR_CHECKPOINT",
                          help="a run folder (its model.safetensors) or a checkpoint file")
    evaluate.add_argument("--checkpoint", default=None, help="the checkpoint file (instead of the positional)")
    evaluate.add_argument("--dataset", default=None, choices=DATASETS, help="default: the one it was trained on")
    evaluate.add_argument("--data-dir", default=None, help="directory holding the dataset's files")
    evaluate.add_argument("--download", action="store_true", help="fetch the dataset if it is not found")
    evaluate.add_argument("--backend", default="numpy", choices=BACKENDS, help="array library to evaluate on")
    evaluate.add_argument("--device", default=None, help="backend device")

    sweep = sub.add_parser("sweep", help="train every combination over seeds and report mean ± std",
                           description="Grid of optimizers x activations x learning rates x losses x weight decays, "
                                       "each over several seeds; writes report.md, sweep.json and comparison plots.")
    sweep.add_argument("--config", default=None, help="TOML file of options (keys as the long flags)")
    _add_data_args(sweep)
    _add_model_args(sweep)
    sweep.add_argument("--optimizers", type=_list(str), default=None, help="e.g. sgd,momentum,rmsprop,adam")
    sweep.add_argument("--activations", type=_list(str), default=None, help="e.g. sigmoid,tanh,relu,leaky_relu")
    sweep.add_argument("--lrs", type=_list(float), default=None, help="learning rates, e.g. 0.1,0.01 (default: --lr)")
    sweep.add_argument("--losses", type=_list(str), default=None, help="cross_entropy,softmax_mse")
    sweep.add_argument("--weight-decays", type=_list(float), default=None,
                       help="weight decays, e.g. 0,1e-4 (default: --weight-decay)")
    sweep.add_argument("--seeds", type=_list(int), default=[0, 1, 2], help="seeds each configuration runs with")
    sweep.add_argument("--out", default=None, help="sweep folder (default runs/<time>-sweep)")
    sweep.add_argument("--executor", default="local", choices=["local", "mpi", "dask"],
                       help="run the grid here one run at a time, on the workers of an MPI launch "
                            "(mpiexec -n N python -m mpi4py.futures -m mlp_backend.cli sweep --executor mpi ...), or "
                            "on a Dask cluster (--scheduler, else one started here with a worker per core)")
    sweep.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="the Dask scheduler of --executor dask, e.g. tcp://10.0.0.1:8786")
    sweep.add_argument("--quiet", action="store_true", help="print only the report")

    plot = sub.add_parser("plot", help="compare run folders, or draw the activation gallery")
    plot.add_argument("runs", nargs="*", help="run folders (each with history.csv)")
    plot.add_argument("--metric", default="val_loss", help="what to compare",
                      choices=["train_loss", "val_loss", "train_accuracy", "val_accuracy"])
    plot.add_argument("--activations", action="store_true", help="plot the activation functions and derivatives")
    plot.add_argument("--out", required=True, help="PNG file to write")

    gradcheck = sub.add_parser("gradcheck", help="check analytic gradients against float64 finite differences")
    gradcheck.add_argument("--sizes", type=_ints, default=[6, 5, 4, 3], help="layer sizes, input to output")
    gradcheck.add_argument("--activation", default="tanh", choices=ACTIVATIONS, help="hidden layers' activation")
    gradcheck.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "softmax_mse", "mse", "bce"],
                           help="loss the gradients are of")
    gradcheck.add_argument("--samples", type=_positive(int), default=8, help="random inputs checked")
    gradcheck.add_argument("--batch-norm", action="store_true", help="BatchNorm1d after each hidden layer")
    gradcheck.add_argument("--dropout", type=_fraction, default=0.0, help="dropout rate (a fixed mask is checked)")
    gradcheck.add_argument("--backend", default="numpy", choices=BACKENDS, help="array library")
    gradcheck.add_argument("--seed", type=int, default=0, help="seeds the model and the inputs")

    sub.add_parser("datasets", help="list the datasets and where their files were found")

    parity = sub.add_parser("parity", help="check that every backend and kernel set trains to the same numbers",
                            description="One epoch with the same seed and data order in float64 on every available "
                                        "backend, fused and reference kernels; exits 1 past the tolerance.")
    parity.add_argument("--dataset", default="synthetic", choices=DATASETS, help="data to train on")
    parity.add_argument("--data-dir", default=None, help="directory holding the dataset's files")
    parity.add_argument("--samples", type=_positive(int), default=2000, help="training samples used")
    parity.add_argument("--hidden", type=_ints, default=[64, 32], help="hidden sizes")
    parity.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="update rule")
    parity.add_argument("--lr", type=_positive(float), default=1e-3, help="learning rate")
    parity.add_argument("--epochs", type=_positive(int), default=1, help="passes over the samples")
    parity.add_argument("--batch-size", type=_positive(int), default=64, help="samples per mini-batch")
    parity.add_argument("--seed", type=int, default=0, help="seeds initialisation and shuffling")
    parity.add_argument("--tol", type=float, default=1e-9, help="largest difference allowed in loss and parameters")

    bench = sub.add_parser("bench", help="time the default job on every backend against native PyTorch",
                           description="Time the default model on each available implementation and batch size "
                                       "against native PyTorch and the GEMM floor.")
    from .bench import add_arguments

    add_arguments(bench)
    from .export.command import add_arguments as add_export_arguments

    add_export_arguments(sub.add_parser("export", help="write a run's model as ONNX, its input scaling inside",
                                        description="Write a finished run's model as an ONNX graph that takes raw "
                                                    "inputs (as mlp evaluate reads them) and gives class "
                                                    "probabilities."))
    return parser


def parse_args(argv=None):
    """Parse flags, taking defaults from ``--config FILE.toml`` where given (flags still win)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        import tomllib

        try:
            with open(args.config, "rb") as f:
                config = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            parser.error(f"cannot read --config {args.config}: {e}")
        sub = parser._subparsers._group_actions[0].choices[args.command]
        known = {a.dest for a in sub._actions}
        settings = {k.replace("-", "_"): v for k, v in config.items()}
        unknown = sorted(set(settings) - known)
        if unknown:
            parser.error(f"unknown keys in {args.config}: {', '.join(unknown)}")
        for action in sub._actions:  # values from TOML go through the same type checks as flags
            if action.dest in settings and action.type is not None and not isinstance(settings[action.dest], list):
                try:
                    settings[action.dest] = action.type(str(settings[action.dest]))
                except argparse.ArgumentTypeError as e:
                    parser.error(f"{args.config}: {action.dest}: {e}")
            if action.dest in settings and action.choices and settings[action.dest] not in action.choices:
                parser.error(f"{args.config}: {action.dest} must be one of {', '.join(map(str, action.choices))}")
        sub.set_defaults(**settings)
        args = parser.parse_args(argv)
    if getattr(args, "resume", None):
        args = _resume_args(parser, args, argv)
    return args


def _resume_args(parser, args, argv):
    """The saved run's options; flags given now must agree with them, except --epochs and output flags."""
    run = Path(args.resume)
    try:
        saved = json.loads((run / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        parser.error(f"--resume {run}: no readable config.json ({e})")
    sub = parser._subparsers._group_actions[0].choices["train"]
    explicit = argparse.Namespace()
    for action in sub._actions:  # a second parse with no defaults shows which flags were typed
        action.default, action._saved_default = argparse.SUPPRESS, action.default
    try:
        parser.parse_args(argv, namespace=explicit)
    finally:
        for action in sub._actions:
            action.default = action._saved_default
    free = {"resume", "epochs", "json", "quiet", "no_progress", "command", "config", "overwrite", "distributed"}
    clashes = [f"--{k.replace('_', '-')} {getattr(explicit, k)!r} (run used {saved.get(k)!r})"
               for k in vars(explicit) if k not in free and getattr(explicit, k) != saved.get(k)]
    if clashes:
        parser.error(f"cannot resume {run} with a different configuration: {'; '.join(clashes)}")
    merged = {**vars(args), **saved, **{k: v for k, v in vars(explicit).items() if k in free}}
    merged.update(out=str(run), resume=str(run))
    return argparse.Namespace(**merged)


# -- shared pieces -------------------------------------------------------------------------------
def _load(name, data_dir, download):
    """A dataset from its files, downloading them first where asked and possible."""
    from .data import load_dataset

    try:
        return load_dataset(name, data_dir)
    except FileNotFoundError:
        if not (download and name in DOWNLOADABLE):
            raise
        from .data import default_data_root, download_dataset

        root = Path(data_dir) if data_dir else default_data_root()
        return load_dataset(name, download_dataset(name, root))


def prepare_data(args):
    """Load, split (optional validation) and scale a dataset; returns (data, X, y, validation, X_test, scaler)."""
    from .data import MinMaxScaler, Standardizer, stratified_split

    data = _load(args.dataset, args.data_dir, getattr(args, "download", False))
    X, y, validation = data.X_train, data.y_train, None
    if args.val_split:
        keep, held = stratified_split(y, args.val_split, args.seed)
        X, y, validation = X[keep], y[keep], (X[held], y[held])
    scaler = None
    if args.scaling in ("standard", "global"):
        scaler = Standardizer(per_feature=args.scaling == "standard").fit(X)
    elif args.scaling == "minmax":
        scaler = MinMaxScaler().fit(X)
    transform = scaler.transform if scaler is not None else (lambda a: a)
    if validation is not None:
        validation = (transform(validation[0]), validation[1])
    return data, transform(X), y, validation, transform(data.X_test), scaler


def _scaler_state(scaler):
    from .data import Standardizer

    if isinstance(scaler, Standardizer):
        return {"kind": "standardizer", **scaler.to_dict()}
    if scaler is not None:
        return {"kind": "minmax", "min": scaler.min_.tolist(), "span": scaler.span_.tolist()}
    return None


def _apply_scaler_state(state, X):
    from .data import Standardizer

    if state is None:
        return X
    if state["kind"] == "standardizer":
        return Standardizer.from_dict(state).transform(X)
    unit = (X - np.asarray(state["min"], dtype=np.float32)) / np.asarray(state["span"], dtype=np.float32)
    return (2 * unit - 1).astype(np.float32)


def train_one(args, prepared, progress=None, on_epoch=None, checkpoint=None, resume=None):
    """Train one model as ``args`` says on prepared data; returns (model, history, test scores, seconds)."""
    from .layers import build_mlp
    from .losses import SoftmaxCrossEntropy
    from .optim import get_optimizer
    from .train import EarlyStopping

    data, X, y, validation, X_test, _ = prepared
    options = vars(args)  # runs saved before an option existed resume with its default
    distributed = options.get("distributed")
    distributed = "mpi" if distributed is True else distributed or None  # runs saved when it was a flag
    device = args.device
    if distributed and args.backend == "cupy" and device is None:
        from .distributed import local_device

        device = local_device()
    model = build_mlp([data.num_features, *args.hidden, data.num_classes], args.activation,
                      alpha=options.get("alpha"), batch_norm=options.get("batch_norm", False), dropout=args.dropout,
                      backend=args.backend, device=device, dtype=args.dtype, seed=args.seed, kernels=args.kernels)
    steps = -(-X.shape[0] // args.batch_size)
    optimizer = get_optimizer(args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                              clip_norm=options.get("clip_norm"), schedule=_schedule(options, steps))
    loss = args.loss
    if loss == "cross_entropy" and options.get("label_smoothing"):
        loss = SoftmaxCrossEntropy(label_smoothing=options["label_smoothing"])
    callbacks = []
    if options.get("patience"):
        if validation is None:
            raise ValueError("--patience needs validation data: add --val-split")
        callbacks.append(EarlyStopping(patience=options["patience"]))
    start = time.perf_counter()
    history = model.fit(X, y, loss=loss, optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size,
                        seed=args.seed, validation_data=validation, callbacks=callbacks,
                        restore_best=getattr(args, "restore_best", False), on_epoch=on_epoch, on_step=progress,
                        checkpoint=checkpoint, checkpoint_every=getattr(args, "checkpoint_every", None),
                        resume=resume, distributed=distributed)
    return model, history, model.evaluate(X_test, data.y_test), time.perf_counter() - start


def _schedule(options, steps_per_epoch):
    """The learning-rate schedule ``--schedule`` names, in optimizer steps."""
    from .optim import CosineDecay, ExponentialDecay, StepDecay

    kind = options.get("schedule", "constant")
    if kind == "step":
        return StepDecay(options["decay"], every=options["decay_epochs"] * steps_per_epoch)
    if kind == "exponential":
        return ExponentialDecay(options["decay"], decay_steps=steps_per_epoch)
    if kind == "cosine":
        return CosineDecay(total_steps=options["epochs"] * steps_per_epoch)
    return None


def _run_dir(out, label) -> Path:
    path = Path(out) if out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    path.mkdir(parents=True, exist_ok=True)
    return path


RUN_FILES = ("config.json", "checkpoint.safetensors", "model.safetensors", "metrics.json", "history.csv")


def _lock(run: Path):
    """An exclusive lock on ``run`` (a file handle to use in ``with``), or an error naming its holder."""
    import fcntl

    handle = open(run / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise OSError(f"{run} is being written by {holder}; wait for it to finish or choose another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"mlp process {os.getpid()}")
    handle.flush()
    return handle


def _remove_stale_temporaries(run: Path):
    """Temporary files of saves that a killed process left behind (the lock says no one else is saving here)."""
    for leftover in run.glob(".*.tmp*"):
        leftover.unlink(missing_ok=True)


def _write_history_csv(history, path: Path):
    h = history.as_dict()
    with open(path / "history.csv", "w", newline="") as f:
        w = csv.writer(f)
        columns = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
        w.writerow(columns)
        for i in range(len(h["train_loss"])):
            row = [i + 1] + [h[k][i] if i < len(h[k]) else "" for k in
                             ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds")]
            w.writerow(row)
    with open(path / "iterations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "loss"])
        w.writerows(enumerate(h["loss"], start=1))


def read_history_csv(run: Path) -> dict:
    """The per-epoch history of a run folder, as lists (empty cells skipped)."""
    out = {k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")}
    with open(Path(run) / "history.csv") as f:
        for row in csv.DictReader(f):
            for k in out:
                if row.get(k):
                    out[k].append(float(row[k]))
    return out


# -- commands ------------------------------------------------------------------------------------
def train_command(args) -> dict:
    prepared = prepare_data(args)
    if args.distributed:
        from .distributed import communicator

        if not communicator("mpi").is_root:  # a replica: trains in step with rank 0, which writes and reports
            resume = Path(args.resume) / "checkpoint.safetensors" if args.resume else None
            train_one(args, prepared, resume=resume)
            return {}
    run = _run_dir(args.out, prepared[0].name)
    with _lock(run):  # one writer per run folder
        if not args.resume and not args.overwrite and any((run / f).exists() for f in RUN_FILES):
            raise ValueError(f"{run} already holds a run: --resume {run} continues it, --overwrite replaces it, "
                             "or choose another --out")
        _remove_stale_temporaries(run)
        return _train_into(run, args, prepared)


def _train_into(run: Path, args, prepared) -> dict:
    from . import plots
    from .checkpoint import save
    from .metrics import classification_report, confusion_matrix

    data, X, y, validation, X_test, scaler = prepared
    if not args.quiet:
        print(f"{data.name}: {X.shape[0]} train, {0 if validation is None else validation[0].shape[0]} validation, "
              f"{X_test.shape[0]} test samples from {data.source}; run folder {run}")

    config = {k: v for k, v in vars(args).items() if k not in ("json", "resume")}
    resume = run / "checkpoint.safetensors" if args.resume else None
    if resume is not None and not resume.exists():
        raise FileNotFoundError(f"{resume} does not exist: the run wrote no checkpoint before it stopped")
    if not args.resume:
        (run / "config.json").write_text(json.dumps(config, indent=2))  # first, so a killed run can resume
    progress = Progress(args.epochs, bar=not (args.no_progress or args.quiet), lines=not args.quiet)
    model, history, scores, wall = train_one(args, prepared, progress.step, progress.end_epoch,
                                             checkpoint=run / "checkpoint.safetensors", resume=resume)
    if not args.quiet:
        print(model.summary())
    predictions = np.asarray(model.predict(X_test))
    cm = confusion_matrix(data.y_test, predictions, data.num_classes)
    text_report = classification_report(data.y_test, predictions, class_names=data.class_names,
                                        num_classes=data.num_classes)
    checkpoint = Path(args.checkpoint) if args.checkpoint else run / "model.safetensors"
    save(model, checkpoint, optimizer=model.optimizer,
         extra={"dataset": data.name, "scaling": _scaler_state(scaler), "class_names": list(data.class_names),
                "epochs_done": len(history.train_loss), "args": config})
    summary = {
        "dataset": data.name, "backend": args.backend, "dtype": args.dtype, "kernels": model.ops.mode,
        "kernels_used": model.ops.used,
        "epochs": len(history.train_loss), "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "train_samples": int(X.shape[0]), "validation_samples": 0 if validation is None else int(len(validation[1])),
        "test_samples": int(X_test.shape[0]), "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
        "final_train_loss": history.train_loss[-1], "train_loss": history.train_loss,
        "val_loss": history.val_loss, "val_accuracy": history.val_accuracy,
        "epoch_seconds": history.epoch_seconds, "train_seconds": wall, "run_dir": str(run),
        "checkpoint": str(checkpoint),
    }
    (run / "metrics.json").write_text(json.dumps(summary, indent=2))
    _write_history_csv(history, run)
    plots.plot_loss(history.as_dict(), run / "loss.png")
    plots.plot_accuracy(history.as_dict(), run / "accuracy.png")
    plots.plot_confusion(cm, data.class_names, run / "confusion_matrix.png")
    names = list(data.class_names) or [str(i) for i in range(data.num_classes)]
    cm_rows = ["| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    cm_rows += [f"| {names[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm)]
    (run / "report.md").write_text("\n".join([
        f"# Run report: {data.name}", "",
        f"Model: {'-'.join(map(str, [data.num_features, *args.hidden, data.num_classes]))} {args.activation}, "
        f"{args.loss}, {args.optimizer} lr {args.lr}, batch {args.batch_size}, {len(history.train_loss)} epochs, "
        f"backend {args.backend} ({args.dtype}, kernels {model.ops.used}), seed {args.seed}.", "",
        "## Test metrics", "", f"- accuracy: {scores['accuracy']:.4f}", f"- loss: {scores['loss']:.4f}", "",
        "## Classification report", "", "```", text_report, "```", "",
        "## Confusion matrix", "", *cm_rows, "",
        "## Timings", "", f"- training: {wall:.1f} s; per epoch: "
        + ", ".join(f"{s:.2f}" for s in history.epoch_seconds) + " s", "",
        "![loss](loss.png)", "", "![accuracy](accuracy.png)", "", "![confusion matrix](confusion_matrix.png)", ""]))
    if not args.quiet:
        print(text_report)
    print(f"test accuracy {scores['accuracy']:.4f}  test loss {scores['loss']:.4f}  "
          f"({sum(history.epoch_seconds):.1f}s training, {args.backend}, kernels {model.ops.used})  -> {run}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


def evaluate_command(args) -> dict:
    from .metrics import classification_report
    from .restore import load

    target = args.checkpoint or args.run
    if target is None:
        raise ValueError("give a run folder or a checkpoint: mlp evaluate RUN_DIR")
    path = Path(target)
    if path.is_dir():  # a run folder: its final model
        path = path / "model.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: the run in {target} has not finished")
    ck = load(path, backend=args.backend, device=args.device)
    name = args.dataset or ck.extra.get("dataset")
    if name is None:
        raise ValueError("the checkpoint does not say which dataset it was trained on; pass --dataset")
    data = _load(name, args.data_dir, args.download)
    X_test = _apply_scaler_state(ck.extra.get("scaling"), data.X_test)
    scores = ck.model.evaluate(X_test, data.y_test)
    pred = np.asarray(ck.model.predict(X_test))
    print(classification_report(data.y_test, pred, class_names=data.class_names, num_classes=data.num_classes))
    print(f"test accuracy {scores['accuracy']:.4f}  test loss {scores['loss']:.4f}  ({name}, {path})")
    return scores


def _executor(kind: str, scheduler: str | None = None):
    """Where a sweep's runs go: this process, one after another, the workers of an MPI launch, or a Dask
    cluster's (all the ``concurrent.futures`` interface)."""
    if kind == "mpi":
        try:
            from mpi4py.futures import MPIPoolExecutor
        except ImportError as e:
            raise ImportError(f"--executor mpi needs mpi4py: pip install 'mlp-backend[mpi]' ({e})") from None
        return MPIPoolExecutor()
    if kind == "dask":
        return _dask_executor(scheduler)
    if scheduler is not None:
        raise ValueError("--scheduler goes with --executor dask")
    from concurrent.futures import Executor

    class InProcess(Executor):  # map() runs each job here, lazily, so results print as they come
        def map(self, fn, *iterables, **kwargs):
            return map(fn, *iterables)
    return InProcess()


@contextlib.contextmanager
def _dask_executor(scheduler):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as e:
        raise ImportError(f"--executor dask needs Dask: pip install 'mlp-backend[dask]' ({e})") from None
    # a cluster of our own: one single-threaded worker process per core (each run's kernels use the core)
    cluster = None if scheduler else LocalCluster(threads_per_worker=1, dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        yield client.get_executor()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@functools.lru_cache(maxsize=4)
def _prepared(key):
    return prepare_data(argparse.Namespace(**dict(key)))


def _sweep_run(job) -> dict:
    """One point of a sweep's grid at one seed (picklable, for any executor)."""
    options, settings, seed, varying = job
    args = argparse.Namespace(**{**options, **settings, "seed": seed})
    data_key = tuple(sorted((k, options[k]) for k in ("dataset", "data_dir", "download", "scaling", "val_split")))
    prepared = _prepared(data_key + (("seed", seed),))  # the validation split depends on the seed
    _, history, scores, wall = train_one(args, prepared)
    return {"label": ", ".join(f"{k}={settings[k]}" for k in varying), **settings, "seed": seed,
            "dataset": prepared[0].name, "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
            "seconds": wall, "history": history.as_dict()}


def sweep_command(args) -> dict:
    import itertools
    import statistics

    from . import plots

    grid = {"optimizer": args.optimizers or [args.optimizer], "activation": args.activations or [args.activation],
            "lr": args.lrs or [args.lr], "loss": args.losses or [args.loss],
            "weight_decay": args.weight_decays or [args.weight_decay]}
    varying = [k for k, v in grid.items() if len(v) > 1] or ["optimizer"]
    run = _run_dir(args.out, "sweep")
    jobs = [(vars(args), dict(zip(grid, combo)), seed, varying)
            for combo in itertools.product(*grid.values()) for seed in args.seeds]
    results = []
    with _executor(args.executor, args.scheduler) as pool:
        for result in pool.map(_sweep_run, jobs):  # in grid order, whatever order they finish in
            results.append(result)
            if not args.quiet:
                print(f"{result['label']} seed {result['seed']}: test accuracy {result['test_accuracy']:.4f}, "
                      f"loss {result['test_loss']:.4f} ({result['seconds']:.1f}s)", flush=True)
    dataset_name = results[0]["dataset"]
    groups = {}
    for r in results:
        groups.setdefault(r["label"], []).append(r)
    rows = ["| configuration | runs | test accuracy (mean ± std) | test loss (mean ± std) |", "|---|---:|---|---|"]
    for label, rs in groups.items():
        acc, loss = [r["test_accuracy"] for r in rs], [r["test_loss"] for r in rs]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
        rows.append(f"| {label} | {len(rs)} | {statistics.mean(acc):.4f} ± {sd(acc):.4f} | "
                    f"{statistics.mean(loss):.4f} ± {sd(loss):.4f} |")
    metric = "val_loss" if args.val_split else "train_loss"
    plots.plot_comparison({k: [r["history"] for r in v] for k, v in groups.items()}, metric,
                          run / "comparison.png")
    plots.plot_comparison({k: [r["history"] for r in v] for k, v in groups.items()},
                          "val_accuracy" if args.val_split else "train_accuracy", run / "comparison_accuracy.png")
    fixed = {k: v[0] for k, v in grid.items() if k not in varying}
    (run / "report.md").write_text("\n".join([
        f"# Sweep on {dataset_name}", "",
        f"Varied: {', '.join(varying)}; fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items())
        + f"; {args.epochs} epochs, batch {args.batch_size}, seeds {args.seeds}, backend {args.backend}.", "",
        *rows, "", f"![{metric}](comparison.png)", "", "![accuracy](comparison_accuracy.png)", ""]))
    (run / "sweep.json").write_text(json.dumps({"grid": grid, "seeds": args.seeds, "results": results}, indent=2))
    print("\n".join(rows))
    print(f"sweep report: {run / 'report.md'}")
    return {"run_dir": str(run), "results": results}


def plot_command(args):
    from . import plots

    if args.activations:
        plots.plot_activations(args.out)
    else:
        if not args.runs:
            raise ValueError("give run folders to compare, or --activations")
        groups = {}
        for run in args.runs:
            history = read_history_csv(Path(run))
            if not history[args.metric]:
                has = [k for k, v in history.items() if v]
                raise ValueError(f"{run} has no {args.metric} (it has {', '.join(has) or 'no metrics'}"
                                 f"{'; validation metrics need --val-split' if args.metric.startswith('val') else ''})")
            groups.setdefault(Path(run).name, []).append(history)
        plots.plot_comparison(groups, args.metric, args.out)
    print(f"wrote {args.out}")


def gradcheck_command(args) -> int:
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


def parity_command(args) -> int:
    """One epoch, same seed and data order, float64, on every available backend and kernel set; compared with
    NumPy's reference kernels. Returns 1 when any differs by more than ``--tol``."""
    from .backend import available_backends, to_numpy
    from .kernels import FUSED_MODULES
    from .layers import build_mlp
    from .optim import get_optimizer

    data = _load(args.dataset, args.data_dir, False)
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


def datasets_command(args):
    from .data.datasets import dataset_folder, find_idx_dir

    rows = []
    for name in DOWNLOADABLE:
        try:
            folder = find_idx_dir(name) if name in ("fashion-mnist", "mnist") else dataset_folder(name)
            rows.append((name, f"found in {folder}"))
        except FileNotFoundError:
            rows.append((name, "not found (pass --data-dir, set MLP_DATA, or mlp train --download)"))
    rows += [("digits", "built in (scikit-learn)"), ("synthetic", "generated")]
    width = max(len(r[0]) for r in rows)
    for name, status in rows:
        print(f"{name:<{width}}  {status}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "train":
            train_command(args)
        elif args.command == "evaluate":
            evaluate_command(args)
        elif args.command == "sweep":
            sweep_command(args)
        elif args.command == "plot":
            plot_command(args)
        elif args.command == "gradcheck":
            return gradcheck_command(args)
        elif args.command == "datasets":
            datasets_command(args)
        elif args.command == "parity":
            return parity_command(args)
        elif args.command == "bench":
            from .bench import bench_command

            bench_command(args)
        elif args.command == "export":
            from .export.command import export_command

            export_command(args)
    except (ValueError, TypeError, KeyError, OSError, ImportError, FloatingPointError) as e:  # incl. DownloadError
        print(f"mlp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlp: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
