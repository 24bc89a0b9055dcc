"""``mlp plot``: compare run folders' curves (mean ± std over runs of one name), or the activation gallery."""
from __future__ import annotations

from pathlib import Path

from .runs import read_history_csv

HELP = "compare run folders, or draw the activation gallery"


def add_arguments(p):
    p.add_argument("runs", nargs="*", help="run folders (each with history.csv)")
    p.add_argument("--metric", default=None, choices=["train_loss", "val_loss", "train_accuracy", "val_accuracy"],
                   help="what to compare (default: val_loss where every run has it, else train_loss)")
    p.add_argument("--activations", action="store_true", help="plot the activation functions and derivatives")
    p.add_argument("--out", required=True, help="PNG file to write")


def run(args):
    from .. import plots

    if args.activations:
        plots.plot_activations(args.out)
    else:
        if not args.runs:
            raise ValueError("give run folders to compare, or --activations")
        histories = {run: read_history_csv(Path(run)) for run in args.runs}
        if args.metric is None:
            args.metric = "val_loss" if all(h["val_loss"] for h in histories.values()) else "train_loss"
        groups = {}
        for run, history in histories.items():
            if not history[args.metric]:
                has = [k for k, v in history.items() if v]
                raise ValueError(f"{run} has no {args.metric} (it has {', '.join(has) or 'no metrics'}"
                                 f"{'; validation metrics need --val-split' if args.metric.startswith('val') else ''})")
            groups.setdefault(Path(run).name, []).append(history)
        plots.plot_comparison(groups, args.metric, args.out)
    print(f"wrote {args.out}")
