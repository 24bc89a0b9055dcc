"""``mlp plot``: compare run folders' curves (mean ± std over runs of one name), or the activation gallery."""
from __future__ import annotations

from pathlib import Path

from .runs import read_history_csv

HELP = "compare run folders, or draw the activation gallery"


def add_arguments(p):
    p.add_argument("runs", nargs="*", help="run folders (each with history.csv)")
    p.add_argument("--metric", default="val_loss", help="what to compare",
                   choices=["train_loss", "val_loss", "train_accuracy", "val_accuracy"])
    p.add_argument("--activations", action="store_true", help="plot the activation functions and derivatives")
    p.add_argument("--out", required=True, help="PNG file to write")


def run(args):
    from .. import plots

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
