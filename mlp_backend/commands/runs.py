"""What the commands share: data loading and scaling, training one model as ``mlp train``'s options say, run
folders (creation, locking, history files), and the executors sweeps and searches run on."""
from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import os
import time
from pathlib import Path

import numpy as np

from .options import DOWNLOADABLE

def load_data(name, data_dir, download):
    """A dataset from its files, downloading them first where asked and possible."""
    from ..data import load_dataset

    try:
        return load_dataset(name, data_dir)
    except FileNotFoundError:
        if not (download and name in DOWNLOADABLE):
            raise
        from ..data import default_data_root, download_dataset

        root = Path(data_dir) if data_dir else default_data_root()
        return load_dataset(name, download_dataset(name, root))


def prepare_data(args):
    """Load, split (optional validation) and scale a dataset; returns (data, X, y, validation, X_test, scaler)."""
    from ..data import MinMaxScaler, Standardizer, stratified_split

    data = load_data(args.dataset, args.data_dir, getattr(args, "download", False))
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


def model_file(target) -> Path:
    """A model file given as itself or as a run folder (its final ``model.safetensors``)."""
    path = Path(target)
    if path.is_dir():
        path = path / "model.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: the run in {target} has not finished")
    return path


def check_reading_context(extra: dict, path) -> dict:
    """A model file's dataset, input scaling and class names, each checked: a forged or damaged file is refused
    naming the field, never used to evaluate on wrong inputs."""
    from ..checkpoint import CheckpointError
    from .options import DATASETS

    def bad(field, why):
        return CheckpointError(f"{path}: field extra.{field}: {why}")
    if "scaling" not in extra:  # evaluating unscaled inputs would print a wrong accuracy, silently
        raise CheckpointError(f"{path} does not record the input scaling its model was trained with (a file written "
                              "by an earlier version, or not by mlp train): evaluate a run folder's model.safetensors")
    dataset = extra.get("dataset")
    if dataset is not None and dataset not in DATASETS:
        raise bad("dataset", f"{str(dataset)[:80]!r} is not one of {', '.join(DATASETS)}")
    scaling = extra["scaling"]
    if scaling is not None:
        fields = {"standardizer": ("mean", "scale"), "minmax": ("min", "span")}
        kind = scaling.get("kind") if isinstance(scaling, dict) else None
        if kind not in fields:
            raise bad("scaling", f"kind must be standardizer or minmax, got {kind!r}")
        for name in fields[kind]:
            try:
                values = np.asarray(scaling[name], dtype=np.float64)
            except (KeyError, TypeError, ValueError):
                raise bad(f"scaling.{name}", "missing or not numbers") from None
            if not np.all(np.isfinite(values)) or (name in ("scale", "span") and not np.all(values > 0)):
                raise bad(f"scaling.{name}", "must be finite" + (" and positive" if name in ("scale", "span") else ""))
    return extra


def reading_context(prepared) -> dict:
    """What evaluating a run's model files needs: its dataset, input scaling and class names."""
    data, scaler = prepared[0], prepared[5]
    from ..data import scaler_state

    return {"dataset": data.name, "scaling": scaler_state(scaler), "class_names": list(data.class_names)}


def train_one(args, prepared, progress=None, on_epoch=None, checkpoint=None, resume=None, callbacks=()):
    """Train one model as ``args`` says on prepared data; returns (model, history, test scores, seconds)."""
    from ..layers import build_mlp
    from ..losses import SoftmaxCrossEntropy
    from ..optim import get_optimizer
    from ..threads import default_setting
    from ..train import EarlyStopping

    data, X, y, validation, X_test, _ = prepared
    options = vars(args)  # runs saved before an option existed resume with its default
    # --threads N fixes the count; without it (and without MLP_THREADS) each epoch's follows the machine's load
    threads = options.get("threads") or default_setting()
    distributed = options.get("distributed")
    distributed = "mpi" if distributed is True else distributed or None  # runs saved when it was a flag
    device = args.device
    if distributed:  # a rank's own device where the library has several (CuPy: its node-local rank's GPU)
        from ..backend import CLASSES

        device = CLASSES[args.backend].rank_device(device)
    model = build_mlp([data.num_features, *args.hidden, data.num_classes], args.activation,
                      alpha=options.get("alpha"), batch_norm=options.get("batch_norm", False), dropout=args.dropout,
                      backend=args.backend, device=device, dtype=args.dtype, seed=args.seed, kernels=args.kernels)
    steps = -(-X.shape[0] // args.batch_size)
    optimizer = get_optimizer(args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                              clip_norm=options.get("clip_norm"), schedule=schedule(options, steps))
    loss = args.loss
    if loss == "cross_entropy" and options.get("label_smoothing"):
        loss = SoftmaxCrossEntropy(label_smoothing=options["label_smoothing"])
    callbacks = list(callbacks)
    if options.get("patience"):
        if validation is None:
            raise ValueError("--patience needs validation data: add --val-split")
        callbacks.append(EarlyStopping(patience=options["patience"]))
    start = time.perf_counter()
    history = model.fit(X, y, loss=loss, optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size,
                        seed=args.seed, validation_data=validation, callbacks=callbacks,
                        restore_best=getattr(args, "restore_best", False), on_epoch=on_epoch, on_step=progress,
                        checkpoint=checkpoint, checkpoint_every=getattr(args, "checkpoint_every", None),
                        checkpoint_extra=reading_context(prepared),
                        allow_other_data=bool(options.get("allow_other_data")),
                        resume=resume, distributed=distributed, threads=threads,
                        graph="auto" if options.get("graph") is None else options["graph"])
    return model, history, model.evaluate(X_test, data.y_test), time.perf_counter() - start


def schedule(options, steps_per_epoch):
    """The learning-rate schedule ``--schedule`` names, in optimizer steps."""
    from ..optim import CosineDecay, ExponentialDecay, StepDecay

    kind = options.get("schedule", "constant")
    if kind == "step":
        return StepDecay(options["decay"], every=options["decay_epochs"] * steps_per_epoch)
    if kind == "exponential":
        return ExponentialDecay(options["decay"], decay_steps=steps_per_epoch)
    if kind == "cosine":
        return CosineDecay(total_steps=options["epochs"] * steps_per_epoch)
    return None


def run_dir(out, label) -> Path:
    path = Path(out) if out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    path.mkdir(parents=True, exist_ok=True)
    return path


RUN_FILES = ("config.json", "checkpoint.safetensors", "model.safetensors", "metrics.json", "history.csv")


def lock(run: Path):
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


def remove_stale_temporaries(run: Path):
    """Temporary files of saves that a killed process left behind (the lock says no one else is saving here)."""
    for leftover in run.glob(".*.tmp*"):
        leftover.unlink(missing_ok=True)


def write_history_csv(history, path: Path):
    h = history.as_dict()
    with open(path / "history.csv", "w", newline="") as f:
        w = csv.writer(f)
        columns = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "threads"]
        w.writerow(columns)
        for i in range(len(h["train_loss"])):
            row = [i + 1] + [h[k][i] if i < len(h[k]) else "" for k in
                             ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
                              "threads")]
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


def executor(kind: str, scheduler: str | None = None):
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
def prepared_data(key):
    return prepare_data(argparse.Namespace(**dict(key)))


