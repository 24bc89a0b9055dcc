"""``mlp train``: train an MLP as the options say and write a run folder (model, metrics, plots, report)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np

from ..progress import Progress
from ..train import DivergenceWarning
from .options import add_data_args, add_model_args, fraction, positive
from .runs import (RUN_FILES, lock, prepare_data, reading_context, remove_stale_temporaries, run_dir, train_one,
                   write_history_csv)

HELP = "train an MLP, write a run folder, report test accuracy"
DESCRIPTION = ("Train an MLP (default: 784-500-250-100-10 ReLU, Adam 1e-3, batch 64, Fashion-MNIST) and "
               "write a run folder with metrics, plots and a report.")


def add_arguments(p):
    p.add_argument("--config", default=None, help="TOML file of options (keys as the long flags)")
    add_data_args(p)
    add_model_args(p)
    p.add_argument("--restore-best", action="store_true", help="end with the best-validation parameters")
    p.add_argument("--checkpoint-every", type=positive(int), default=None,
                   help="also write RUN_DIR/checkpoint.safetensors every N steps (always after each epoch)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint (only --epochs may change)")
    p.add_argument("--out", default=None, help="run folder (default runs/<time>-<dataset>)")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--distributed", nargs="?", const="mpi", default=None,
                   choices=["mpi", "mpi-staged", "mpi-cuda", "nccl"],
                   help="data-parallel over the processes of an MPI launch: mpiexec -n N mlp train --distributed "
                        "(--batch-size is the global batch; rank 0 writes the run folder; with --backend cupy each "
                        "rank takes the GPU of its rank on its node). 'mpi' picks how arrays travel: NCCL for "
                        "CuPy where it can, else CUDA-aware MPI, else host staging; name one to force it")
    p.add_argument("--checkpoint", default=None, help="checkpoint path (default RUN_DIR/model.safetensors)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the summary JSON here")
    p.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="DIR",
                   help="write TensorBoard event files (DIR default: RUN_DIR/tensorboard)")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="log the run to MLflow at URI: sqlite:///mlflow.db, a tracking server, or a folder")
    p.add_argument("--allow-other-data", action="store_true",
                   help="with --resume: continue on data other than the run's (refused otherwise)")
    p.add_argument("--fail-on-divergence", action="store_true",
                   help="exit with status 3 when training diverged without a non-finite loss (the run folder is "
                        "written and records it either way)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="print only the final result")


def run(args) -> dict | int:
    """Train into a run folder; 3 (the exit status) when training diverged and ``--fail-on-divergence`` says so."""
    from ..backend import get_backend

    get_backend(args.backend, device=args.device, dtype=args.dtype)  # a missing library fails before any folder
    if args.distributed:
        from ..distributed import communicator

        if not communicator("mpi").is_root:  # a replica: trains in step with rank 0, which writes and reports
            resume = Path(args.resume) / "checkpoint.safetensors" if args.resume else None
            train_one(args, prepare_data(args), resume=resume)
            return {}
    created = not (Path(args.out).exists() if args.out else False)
    folder = run_dir(args.out, args.dataset)
    try:
        with lock(folder):  # one writer per run folder, before the data is loaded
            if not args.resume and not args.overwrite and any((folder / f).exists() for f in RUN_FILES):
                raise ValueError(f"{folder} already holds a run: --resume {folder} continues it, --overwrite "
                                 "replaces it, or choose another --out")
            remove_stale_temporaries(folder)
            aside = _set_aside(folder) if args.overwrite and not args.resume else None
            try:
                summary = _train_into(folder, args, prepare_data(args))
            except BaseException:
                _put_back(folder, aside)  # a failed --overwrite leaves the run it was to replace
                raise
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)
    except BaseException as e:
        if created and not (folder / "checkpoint.safetensors").exists():  # nothing to resume: no half-made folder
            shutil.rmtree(folder, ignore_errors=True)
        elif isinstance(e, KeyboardInterrupt):
            print(f"mlp: interrupted; continue with: mlp train --resume {folder}", file=sys.stderr)
            raise SystemExit(130) from None
        raise
    if summary["diverged"]:
        print(f"mlp: warning: training diverged ({summary['diverged']})", file=sys.stderr)
        if args.fail_on_divergence:
            return 3
    return summary


def _set_aside(folder: Path) -> Path | None:
    """The run already in ``folder`` moved into a hidden subfolder until the new one has replaced it."""
    old = [f for f in folder.iterdir() if not f.name.startswith(".")]
    if not old:
        return None
    aside = folder / f".replaced-{os.getpid()}"
    aside.mkdir()
    for f in old:
        f.rename(aside / f.name)
    return aside


def _put_back(folder: Path, aside: Path | None):
    if aside is None:
        return
    for f in folder.iterdir():
        if not f.name.startswith("."):
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    for f in aside.iterdir():
        f.rename(folder / f.name)
    aside.rmdir()


def _train_into(run: Path, args, prepared) -> dict:
    data, X, _, validation, X_test, _ = prepared
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
    tracking = _tracking_callbacks(args, run, config)
    try:
        with warnings.catch_warnings():  # recorded in the run folder and said in one line at the end
            warnings.simplefilter("ignore", DivergenceWarning)
            trained = train_one(args, prepared, progress.step, progress.end_epoch,
                                checkpoint=run / "checkpoint.safetensors", resume=resume, callbacks=tracking)
    except BaseException:
        for cb in tracking:
            if hasattr(cb, "finish"):
                cb.finish("FAILED")
        raise
    summary, checkpoint = _write_results(run, args, prepared, config, *trained)
    for cb in tracking:
        if hasattr(cb, "finish"):  # MLflow: the run folder's results, then the run is done
            cb.log_artifacts([run / f for f in ("report.md", "metrics.json", "history.csv", "loss.png",
                                                "accuracy.png", "confusion_matrix.png")] + [checkpoint])
            cb.finish()
    return summary


def _write_results(run: Path, args, prepared, config, model, history, scores, wall):
    """The trained model, metrics.json, history.csv, the plots and report.md; returns (summary, model file)."""
    from .. import plots
    from ..checkpoint import save
    from ..metrics import classification_report, confusion_matrix

    data, X, _, validation, X_test, _ = prepared
    if not args.quiet:
        print(model.summary())
    predictions = np.asarray(model.predict(X_test))
    cm = confusion_matrix(data.y_test, predictions, data.num_classes)
    text_report = classification_report(data.y_test, predictions, class_names=data.class_names,
                                        num_classes=data.num_classes)
    checkpoint = Path(args.checkpoint) if args.checkpoint else run / "model.safetensors"
    save(model, checkpoint, optimizer=model.optimizer,
         extra={**reading_context(prepared), "epochs_done": len(history.train_loss), "args": config})
    summary = {
        "dataset": data.name, "backend": args.backend, "dtype": args.dtype, "kernels": model.ops.mode,
        "kernels_used": model.ops.used,
        "epochs": len(history.train_loss), "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "train_samples": int(X.shape[0]), "validation_samples": 0 if validation is None else int(len(validation[1])),
        "test_samples": int(X_test.shape[0]), "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
        "final_train_loss": history.train_loss[-1], "train_loss": history.train_loss,
        "val_loss": history.val_loss, "val_accuracy": history.val_accuracy,
        "epoch_seconds": history.epoch_seconds, "threads": history.threads, "train_seconds": wall, "run_dir": str(run),
        "checkpoint": str(checkpoint), "diverged": history.diverged,
    }
    (run / "metrics.json").write_text(json.dumps(summary, indent=2))
    write_history_csv(history, run)
    plots.plot_loss(history.as_dict(), run / "loss.png")
    plots.plot_accuracy(history.as_dict(), run / "accuracy.png")
    plots.plot_confusion(cm, data.class_names, run / "confusion_matrix.png")
    (run / "report.md").write_text(_report(args, data, model, history, scores, wall, text_report, cm))
    if not args.quiet:
        print(text_report)
    print(f"test accuracy {scores['accuracy']:.4f}  test loss {scores['loss']:.4f}  "
          f"({sum(history.epoch_seconds):.1f}s training, {args.backend}, kernels {model.ops.used})  -> {run}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary, checkpoint


def _report(args, data, model, history, scores, wall, text_report, cm) -> str:
    """report.md: the model, test metrics, classification report, confusion matrix, timings and plots."""
    names = list(data.class_names) or [str(i) for i in range(data.num_classes)]
    cm_rows = ["| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    cm_rows += [f"| {names[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm)]
    return "\n".join([
        f"# Run report: {data.name}", "",
        f"Model: {'-'.join(map(str, [data.num_features, *args.hidden, data.num_classes]))} {args.activation}, "
        f"{args.loss}, {args.optimizer} lr {args.lr}, batch {args.batch_size}, {len(history.train_loss)} epochs, "
        f"backend {args.backend} ({args.dtype}, kernels {model.ops.used}), seed {args.seed}.", "",
        *([f"**Diverged** ({history.diverged}): these results are not a trained model's.", ""]
          if history.diverged else []),
        "## Test metrics", "", f"- accuracy: {scores['accuracy']:.4f}", f"- loss: {scores['loss']:.4f}", "",
        "## Classification report", "", "```", text_report, "```", "",
        "## Confusion matrix", "", *cm_rows, "",
        "## Timings", "", f"- training: {sum(history.epoch_seconds):.1f} s (as printed; {wall:.1f} s with "
        f"validation and set-up); per epoch: "
        + ", ".join(f"{s:.2f}" for s in history.epoch_seconds) + " s"
        + (f"; threads per epoch: {', '.join(map(str, history.threads))}" if history.threads else ""), "",
        "![loss](loss.png)", "", "![accuracy](accuracy.png)", "", "![confusion matrix](confusion_matrix.png)", ""])


def _tracking_callbacks(args, run: Path, config: dict) -> list:
    """TensorBoard and MLflow callbacks as ``--tensorboard`` and ``--mlflow`` ask (runs saved before these
    options existed have neither)."""
    from ..tracking import MLflow, TensorBoard

    options, found = vars(args), []
    if options.get("tensorboard") is not None:
        found.append(TensorBoard(options["tensorboard"] or run / "tensorboard", hparams=config))
    if options.get("mlflow"):
        found.append(MLflow(options["mlflow"], run_name=run.name, params=config, record=run / "mlflow.json",
                            end_with_training=False))
    return found


# options that may differ when a run is resumed (the rest must be the run's own)
RESUMABLE = {"resume", "epochs", "json", "quiet", "no_progress", "command", "config", "overwrite", "distributed",
             "allow_other_data", "fail_on_divergence"}


def resume_args(args, explicit: dict, error):
    """The saved run's options for ``--resume RUN_DIR``; ``explicit`` (the options typed) must agree with them,
    except those in ``RESUMABLE``. ``error``: the parser's error (one line, exit 2)."""
    run_folder = Path(args.resume)
    try:
        saved = json.loads((run_folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        error(f"--resume {run_folder}: no readable config.json ({e})")
    clashes = [f"--{k.replace('_', '-')} {v!r} (run used {saved.get(k)!r})"
               for k, v in explicit.items() if k not in RESUMABLE and v != saved.get(k)]
    if clashes:
        error(f"cannot resume {run_folder} with a different configuration: {'; '.join(clashes)}")
    merged = {**vars(args), **saved, **{k: v for k, v in explicit.items() if k in RESUMABLE}}
    merged.update(out=str(run_folder), resume=str(run_folder))
    return type(args)(**merged)
