"""``mlp sweep``: a grid of optimizers x activations x learning rates x losses x weight decays over seeds;
report.md with mean ± std, sweep.json and comparison plots. Runs here, on MPI workers or on a Dask cluster."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import add_data_args, add_model_args, listed
from .runs import executor, lock, prepared_data, run_dir, train_one

HELP = "train every combination over seeds and report mean ± std"
DESCRIPTION = ("Grid of optimizers x activations x learning rates x losses x weight decays, each over "
               "several seeds; writes report.md, sweep.json and comparison plots.")


def add_arguments(p):
    p.add_argument("--config", default=None, help="TOML file of options (keys as the long flags)")
    add_data_args(p)
    add_model_args(p)
    p.add_argument("--optimizers", type=listed(str), default=None, help="e.g. sgd,momentum,rmsprop,adam")
    p.add_argument("--activations", type=listed(str), default=None, help="e.g. sigmoid,tanh,relu,leaky_relu")
    p.add_argument("--lrs", type=listed(float), default=None, help="learning rates, e.g. 0.1,0.01 (default: --lr)")
    p.add_argument("--losses", type=listed(str), default=None, help="cross_entropy,softmax_mse")
    p.add_argument("--weight-decays", type=listed(float), default=None,
                   help="weight decays, e.g. 0,1e-4 (default: --weight-decay)")
    p.add_argument("--seeds", type=listed(int), default=[0, 1, 2], help="seeds each configuration runs with")
    p.add_argument("--out", default=None, help="sweep folder (default runs/<time>-sweep)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: its finished points are kept")
    p.add_argument("--overwrite", action="store_true", help="replace the sweep already in --out")
    p.add_argument("--executor", default="local", choices=["local", "mpi", "dask"],
                   help="run the grid here one run at a time, on the workers of an MPI launch "
                        "(mpiexec -n N python -m mpi4py.futures -m mlp_backend.cli sweep --executor mpi ...), or "
                        "on a Dask cluster (--scheduler, else one started here with a worker per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="the Dask scheduler of --executor dask, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--quiet", action="store_true", help="print only the report")


def _sweep_run(job) -> dict:
    """One point of a sweep's grid at one seed (picklable, for any executor): its scores, or, when it fails, its
    error in one line; a run that diverged without failing is marked so."""
    import warnings

    from ..train import DivergenceWarning

    options, settings, seed, varying = job
    point = {"label": ", ".join(f"{k}={settings[k]}" for k in varying), **settings, "seed": seed}
    args = argparse.Namespace(**{**options, **settings, "seed": seed})
    data_key = tuple(sorted((k, options[k]) for k in ("dataset", "data_dir", "download", "scaling", "val_split")))
    try:
        prepared = prepared_data(data_key + (("seed", seed),))  # the validation split depends on the seed
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DivergenceWarning)
            _, history, scores, wall = train_one(args, prepared)
    except (ValueError, FloatingPointError, RuntimeError, OSError) as e:
        return {**point, "status": "failed", "error": " ".join(str(e).split())}
    diverged = [str(w.message) for w in caught if issubclass(w.category, DivergenceWarning)]
    return {**point, "status": "diverged" if diverged else "ok", "error": diverged[0] if diverged else None,
            "dataset": prepared[0].name, "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
            "seconds": wall, "history": history.as_dict()}


def run(args) -> dict:
    import itertools

    grid = {"optimizer": args.optimizers or [args.optimizer], "activation": args.activations or [args.activation],
            "lr": args.lrs or [args.lr], "loss": args.losses or [args.loss],
            "weight_decay": args.weight_decays or [args.weight_decay]}
    varying = [k for k, v in grid.items() if len(v) > 1] or ["optimizer"]
    folder = run_dir(args.out, "sweep")
    with lock(folder):  # one writer per sweep folder
        done = _earlier_results(folder, args, grid)
        jobs = [(vars(args), dict(zip(grid, combo)), seed, varying)
                for combo in itertools.product(*grid.values()) for seed in args.seeds]
        results = []
        with executor(args.executor, args.scheduler) as pool:
            todo = [job for job in jobs if _key(job[1], job[2]) not in done]
            fresh = iter(pool.map(_sweep_run, todo))  # in grid order, whatever order they finish in
            for job in jobs:
                result = done.get(_key(job[1], job[2])) or next(fresh)
                results.append(result)
                _write_json(folder, grid, args.seeds, results)  # as it goes: a stopped sweep keeps its points
                if not args.quiet:
                    print(_line(result), flush=True)
        return _report(folder, args, grid, varying, results)


def _key(settings: dict, seed) -> str:
    return json.dumps({**settings, "seed": seed}, sort_keys=True)


def _earlier_results(folder: Path, args, grid: dict) -> dict:
    """The finished points of the sweep already in ``folder`` (``--resume``), or none (``--overwrite``, or an
    empty folder); a sweep is not replaced unasked."""
    path = folder / "sweep.json"
    if not path.exists():
        return {}
    if args.overwrite:
        return {}
    if not args.resume:
        raise ValueError(f"{folder} already holds a sweep: --resume continues it (its finished points are kept), "
                         "--overwrite replaces it, or choose another --out")
    earlier = json.loads(path.read_text())["results"]
    return {_key({k: r[k] for k in grid}, r["seed"]): r
            for r in earlier if r.get("status", "ok") != "failed"}


def _write_json(folder: Path, grid, seeds, results):
    tmp = folder / ".sweep.json.tmp"
    tmp.write_text(json.dumps({"grid": grid, "seeds": seeds, "results": results}, indent=2))
    tmp.replace(folder / "sweep.json")


def _line(result) -> str:
    head = f"{result['label']} seed {result['seed']}"
    if result["status"] == "failed":
        return f"{head}: FAILED: {result['error']}"
    note = "  DIVERGED" if result["status"] == "diverged" else ""
    return (f"{head}: test accuracy {result['test_accuracy']:.4f}, loss {result['test_loss']:.4f} "
            f"({result['seconds']:.1f}s){note}")


def _report(folder: Path, args, grid, varying, results) -> dict:
    """report.md (mean ± std over the seeds that ran; diverged and failed runs marked) and the plots."""
    import statistics

    from .. import plots

    finished = [r for r in results if r["status"] != "failed"]
    groups = {}
    for r in finished:
        groups.setdefault(r["label"], []).append(r)
    rows = ["| configuration | runs | test accuracy (mean ± std) | test loss (mean ± std) | notes |",
            "|---|---:|---|---|---|"]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    for label, rs in groups.items():
        acc, loss = [r["test_accuracy"] for r in rs], [r["test_loss"] for r in rs]
        diverged = [str(r["seed"]) for r in rs if r["status"] == "diverged"]
        note = f"diverged: seed {', '.join(diverged)}" if diverged else ""
        rows.append(f"| {label} | {len(rs)} | {statistics.mean(acc):.4f} ± {sd(acc):.4f} | "
                    f"{statistics.mean(loss):.4f} ± {sd(loss):.4f} | {note} |")
    failed = [f"- {r['label']} seed {r['seed']}: {r['error']}" for r in results if r["status"] == "failed"]
    metric = "val_loss" if args.val_split else "train_loss"
    histories = {k: [r["history"] for r in v] for k, v in groups.items()}
    if histories:
        plots.plot_comparison(histories, metric, folder / "comparison.png")
        plots.plot_comparison(histories, "val_accuracy" if args.val_split else "train_accuracy",
                              folder / "comparison_accuracy.png")
    fixed = {k: v[0] for k, v in grid.items() if k not in varying}
    dataset = finished[0]["dataset"] if finished else args.dataset
    (folder / "report.md").write_text("\n".join([
        f"# Sweep on {dataset}", "",
        f"Varied: {', '.join(varying)}; fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items())
        + f"; {args.epochs} epochs, batch {args.batch_size}, seeds {args.seeds}, backend {args.backend}.", "",
        *rows, "", *(["## Failed runs", "", *failed, ""] if failed else []),
        f"![{metric}](comparison.png)", "", "![accuracy](comparison_accuracy.png)", ""]))
    print("\n".join(rows + failed))
    print(f"sweep report: {folder / 'report.md'}")
    if not finished:
        raise ValueError(f"every run of the sweep failed (first: {results[0]['error']}); see {folder / 'sweep.json'}")
    return {"run_dir": str(folder), "results": results}
