"""``mlp sweep``: a grid of optimizers x activations x learning rates x losses x weight decays over seeds;
report.md with mean ± std, sweep.json and comparison plots. Runs here, on MPI workers or on a Dask cluster."""
from __future__ import annotations

import argparse
import json

from .options import add_data_args, add_model_args, listed
from .runs import executor, prepared_data, run_dir, train_one

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
    p.add_argument("--executor", default="local", choices=["local", "mpi", "dask"],
                   help="run the grid here one run at a time, on the workers of an MPI launch "
                        "(mpiexec -n N python -m mpi4py.futures -m mlp_backend.cli sweep --executor mpi ...), or "
                        "on a Dask cluster (--scheduler, else one started here with a worker per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="the Dask scheduler of --executor dask, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--quiet", action="store_true", help="print only the report")


def _sweep_run(job) -> dict:
    """One point of a sweep's grid at one seed (picklable, for any executor)."""
    options, settings, seed, varying = job
    args = argparse.Namespace(**{**options, **settings, "seed": seed})
    data_key = tuple(sorted((k, options[k]) for k in ("dataset", "data_dir", "download", "scaling", "val_split")))
    prepared = prepared_data(data_key + (("seed", seed),))  # the validation split depends on the seed
    _, history, scores, wall = train_one(args, prepared)
    return {"label": ", ".join(f"{k}={settings[k]}" for k in varying), **settings, "seed": seed,
            "dataset": prepared[0].name, "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
            "seconds": wall, "history": history.as_dict()}


def run(args) -> dict:
    import itertools
    import statistics

    from .. import plots

    grid = {"optimizer": args.optimizers or [args.optimizer], "activation": args.activations or [args.activation],
            "lr": args.lrs or [args.lr], "loss": args.losses or [args.loss],
            "weight_decay": args.weight_decays or [args.weight_decay]}
    varying = [k for k, v in grid.items() if len(v) > 1] or ["optimizer"]
    run = run_dir(args.out, "sweep")
    jobs = [(vars(args), dict(zip(grid, combo)), seed, varying)
            for combo in itertools.product(*grid.values()) for seed in args.seeds]
    results = []
    with executor(args.executor, args.scheduler) as pool:
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
