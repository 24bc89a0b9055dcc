"""``mlp datasets``: which datasets are available and where their files were found."""
from __future__ import annotations

from .options import DOWNLOADABLE

HELP = "list the datasets and where their files were found"


def add_arguments(p):
    pass


def run(args):
    from ..data.datasets import dataset_folder, find_idx_dir

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
