"""``mlp tune``: hyper-parameter search with Optuna (also :func:`mlp_backend.tune`).

Each trial trains the model ``mlp train`` would, with the trial's choices from the search space, and scores it by
its last validation loss (lower is better). The validation loss is reported every epoch to a median pruner,
so hopeless trials stop early; a trial whose loss becomes non-finite is pruned, not failed. The sampler is
Optuna's TPE seeded with ``--seed``: the same seed and data give the same trials. A study in ``--storage``
(default: ``study.db`` in the study folder) gains trials when run again. The study folder holds
``report.md`` (the best trial, a table of all), ``study.json``, Optuna's history and importance plots, and
``best-run/``: the best trial trained again as an ``mlp train`` run folder.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

from . import train
from .options import add_data_args, add_model_args, sizes
from .runs import executor, prepared_data, run_dir, train_one

HELP = "search hyper-parameters with Optuna (pruning, stored studies)"
DESCRIPTION = ("Optuna's seeded TPE over learning rate, hidden sizes, activation, optimizer, batch size, dropout "
               "and weight decay, scored by the validation loss, with median pruning; writes a study folder.")

# The default search space. A key maps to a range (``low``/``high``, ``log``), to ``choices``, or to one value
# (fixed: not searched). ``--space FILE.toml`` replaces entries; ``hidden`` choices are comma-separated sizes.
SPACE = {
    "lr": {"low": 1e-4, "high": 3e-2, "log": True},
    "hidden": {"choices": ["64", "128", "256,128", "500,250,100"]},
    "activation": {"choices": ["relu", "tanh", "gelu", "leaky_relu"]},
    "optimizer": {"choices": ["adam", "momentum", "rmsprop"]},
    "batch_size": {"choices": [32, 64, 128, 256]},
    "dropout": {"low": 0.0, "high": 0.5},
    "weight_decay": {"choices": [0.0, 1e-5, 1e-4, 1e-3]},
}


def add_arguments(p):
    add_data_args(p)
    add_model_args(p)
    p.add_argument("--trials", type=int, default=20, help="trials to run (added to a stored study's)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL, e.g. sqlite:///study.db (default: study.db in the study folder)")
    p.add_argument("--study-name", default="mlp-tune", help="the study's name in the storage")
    p.add_argument("--space", default=None, metavar="FILE.toml",
                   help="search-space entries replacing the defaults: lr = {low = 1e-3, high = 1e-1, log = true}, "
                        "optimizer = {choices = ['adam', 'sgd']}, or one value to fix it (batch_size = 64)")
    p.add_argument("--lr-range", default=None, metavar="LOW,HIGH", help="learning-rate range (log scale)")
    p.add_argument("--optimizers", default=None, help="optimizers to choose from, e.g. adam,sgd")
    p.add_argument("--activations", default=None, help="activations to choose from, e.g. relu,tanh")
    p.add_argument("--executor", default="local", choices=["local", "mpi", "dask"],
                   help="run trials here one at a time, on the workers of an MPI launch, or on a Dask cluster "
                        "(--scheduler); parallel trials share the storage")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="the Dask scheduler of --executor dask")
    p.add_argument("--out", default=None, help="study folder (default runs/<time>-tune)")
    p.add_argument("--quiet", action="store_true", help="print only the result")


def search_space(args) -> dict:
    """The default space with ``--space`` and the narrowing options applied; every entry checked."""
    space = copy.deepcopy(SPACE)
    if args.space:
        import tomllib

        try:
            with open(args.space, "rb") as f:
                given = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"cannot read --space {args.space}: {e}") from None
        unknown = sorted(set(given) - set(SPACE))
        if unknown:
            raise ValueError(f"--space {args.space}: unknown keys {', '.join(unknown)} (known: {', '.join(SPACE)})")
        space.update(given)
    if args.lr_range:
        low, high = (float(v) for v in args.lr_range.split(","))
        space["lr"] = {"low": low, "high": high, "log": True}
    if args.optimizers:
        space["optimizer"] = {"choices": args.optimizers.split(",")}
    if args.activations:
        space["activation"] = {"choices": args.activations.split(",")}
    for key, entry in space.items():
        if isinstance(entry, dict) and not ("choices" in entry or {"low", "high"} <= set(entry)):
            raise ValueError(f"search space {key}: give low and high, choices, or one value")
        if isinstance(entry, dict) and "low" in entry and not entry["low"] <= entry["high"]:
            raise ValueError(f"search space {key}: low {entry['low']} is above high {entry['high']}")
    return space


def _suggest(trial, space: dict) -> dict:
    chosen = {}
    for key, entry in space.items():
        if not isinstance(entry, dict):
            chosen[key] = entry
        elif "choices" in entry:
            chosen[key] = trial.suggest_categorical(key, list(entry["choices"]))
        else:
            chosen[key] = trial.suggest_float(key, float(entry["low"]), float(entry["high"]),
                                              log=bool(entry.get("log", False)))
    return chosen


def _trial_args(options: dict, chosen: dict) -> argparse.Namespace:
    """``mlp train``'s options for one trial."""
    values = dict(chosen)
    if "hidden" in values:
        values["hidden"] = sizes(str(values["hidden"]))
    if "batch_size" in values:
        values["batch_size"] = int(values["batch_size"])
    return argparse.Namespace(**{**options, **values})


def _objective(options: dict, space: dict):
    """The function Optuna minimises: the trial's last validation loss."""
    import optuna

    data_key = tuple(sorted((k, options[k]) for k in ("dataset", "data_dir", "download", "scaling", "val_split",
                                                        "seed")))

    def objective(trial):
        args = _trial_args(options, _suggest(trial, space))

        def report(epoch, logs):
            trial.report(logs["val_loss"], epoch)
            if not math.isfinite(logs["val_loss"]) or trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} (val_loss {logs['val_loss']:.4g})")
        try:
            _, history, _, _ = train_one(args, prepared_data(data_key), on_epoch=report)
        except FloatingPointError as e:  # diverged: no score to compare, so pruned rather than failed
            raise optuna.TrialPruned(str(e)) from None
        return history.val_loss[-1]
    return objective


def _study(storage: str, name: str, seed: int, worker: int = 0):
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed + 7919 * worker)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                               direction="minimize", load_if_exists=True)


def _one_trial(job):
    """One trial on a worker (picklable, for the MPI and Dask executors)."""
    options, space, storage, name, worker = job
    _quiet_optuna()
    _study(storage, name, options["seed"], worker).optimize(_objective(options, space), n_trials=1)
    return worker


def _quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run(args) -> dict:
    try:
        import optuna  # noqa: F401
    except ImportError as e:
        raise ImportError(f"mlp tune needs Optuna: pip install 'mlp-backend[tune]' ({e})") from None
    if args.trials < 1:
        raise ValueError(f"--trials must be positive, got {args.trials}")
    if not args.val_split:
        args.val_split = 0.1  # trials are scored on held-out data
    space = search_space(args)
    folder = run_dir(args.out, "tune")
    storage = args.storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    options = dict(vars(args))
    if args.quiet:
        _quiet_optuna()
    study = _study(storage, args.study_name, args.seed)
    before = len(study.trials)
    if args.executor == "local":
        study.optimize(_objective(options, space), n_trials=args.trials)
    else:
        jobs = [(options, space, storage, args.study_name, before + k + 1) for k in range(args.trials)]
        with executor(args.executor, args.scheduler) as pool:
            list(pool.map(_one_trial, jobs))
        study = _study(storage, args.study_name, args.seed)
    return _write_study(study, folder, args, space, storage, before)


def _write_study(study, folder: Path, args, space, storage, before) -> dict:
    import optuna

    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
              for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"no trial of study {args.study_name} completed ({len(trials)} pruned or failed): "
                         "narrow the search space (--lr-range, --space)")
    best = study.best_trial
    (folder / "study.json").write_text(json.dumps({"study_name": args.study_name, "storage": storage,
                                                   "space": space, "trials": trials}, indent=2))
    _plots(study, folder)
    summary = train.run(_best_run_args(args, _suggest(best, space), folder / "best-run"))
    rows = ["| trial | state | validation loss | " + " | ".join(space) + " |",
            "|---:|---|---:|" + "---|" * len(space)]
    for t in trials:
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        rows.append(f"| {t['number']} | {t['state'].lower()} | {value} | "
                    + " | ".join(_shown(t["params"].get(k, space[k])) for k in space) + " |")
    (folder / "report.md").write_text("\n".join([
        f"# Study {args.study_name} on {summary['dataset']}", "",
        f"{len(trials)} trials ({len(trials) - before} this time; {len(complete)} complete, "
        f"{sum(t['state'] == 'PRUNED' for t in trials)} pruned), {args.epochs} epochs each, seed {args.seed}, "
        f"scored by the last validation loss; storage `{storage}`.", "",
        f"**Best: trial {best.number}**, validation loss {best.value:.4f}: "
        + ", ".join(f"{k}={_shown(v)}" for k, v in best.params.items())
        + f". Trained again in `best-run/`: test accuracy {summary['test_accuracy']:.4f}.", "",
        *rows, "", "![history](optimization_history.png)", "", "![importances](param_importances.png)", ""]))
    print(f"best trial {best.number}: validation loss {best.value:.4f}  "
          + "  ".join(f"{k}={_shown(v)}" for k, v in best.params.items())
          + f"\nstudy report: {folder / 'report.md'}", file=sys.stdout)
    return {"study_dir": str(folder), "best_params": best.params, "best_value": best.value, "trials": trials,
            "best_run": summary}


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _best_run_args(args, chosen: dict, out: Path) -> argparse.Namespace:
    """``mlp train``'s options (its defaults, then this study's data and model options, then the trial's)."""
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    base = vars(parser.parse_args([]))
    shared = {k: v for k, v in vars(args).items() if k in base and k not in ("out", "quiet")}
    best = vars(_trial_args({**base, **shared}, chosen))
    best.update(command="train", out=str(out), overwrite=True, quiet=True, no_progress=True)
    return argparse.Namespace(**best)


def _plots(study, folder: Path):
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, draw in (("optimization_history", ovm.plot_optimization_history),
                           ("param_importances", ovm.plot_param_importances)):
            try:
                axes = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):  # importances need varied, complete trials
                continue
            axes.figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            plt.close(axes.figure)


def tune(**options) -> dict:
    """``mlp tune`` from Python: its options as keywords (``dataset="digits", trials=6, epochs=2, seed=0,
    storage="sqlite:///study.db"``); returns the best parameters and value, the trials, and the best run's
    summary."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    unknown = sorted(set(options) - set(vars(args)))
    if unknown:
        raise TypeError(f"tune() got unknown options {', '.join(unknown)}")
    vars(args).update(options, command="tune")
    return run(args)
