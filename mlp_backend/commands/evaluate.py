"""``mlp evaluate``: a saved model on its dataset's test split, with the run's own input scaling."""
from __future__ import annotations

import numpy as np

from .options import BACKENDS, DATASETS
from .runs import check_reading_context, load_data, model_file

HELP = "evaluate a saved model on a dataset's test split"


def add_arguments(p):
    p.add_argument("run", nargs="?", default=None, metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run folder (its model.safetensors) or a checkpoint file")
    p.add_argument("--checkpoint", default=None, help="the checkpoint file (instead of the positional)")
    p.add_argument("--dataset", default=None, choices=DATASETS, help="default: the one it was trained on")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset's files")
    p.add_argument("--download", action="store_true", help="fetch the dataset if it is not found")
    p.add_argument("--backend", default="numpy", choices=BACKENDS, help="array library to evaluate on")
    p.add_argument("--device", default=None, help="backend device")


def run(args) -> dict:
    from ..data import scaler_from_state
    from ..metrics import classification_report
    from ..restore import load

    target = args.checkpoint or args.run
    if target is None:
        raise ValueError("give a run folder or a checkpoint: mlp evaluate RUN_DIR")
    path = model_file(target)
    ck = load(path, backend=args.backend, device=args.device)
    check_reading_context(ck.extra, path)
    name = args.dataset or ck.extra.get("dataset")
    if name is None:
        raise ValueError("the checkpoint does not say which dataset it was trained on; pass --dataset")
    data = load_data(name, args.data_dir, args.download)
    scaler = scaler_from_state(ck.extra["scaling"])
    X_test = data.X_test if scaler is None else scaler.transform(data.X_test)
    scores = ck.model.evaluate(X_test, data.y_test)
    pred = np.asarray(ck.model.predict(X_test))
    print(classification_report(data.y_test, pred, class_names=data.class_names, num_classes=data.num_classes))
    print(f"test accuracy {scores['accuracy']:.4f}  test loss {scores['loss']:.4f}  ({name}, {path})")
    return scores
