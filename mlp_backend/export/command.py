"""``mlp export RUN_DIR --format onnx --out model.onnx``: a run's model with its own input scaling inside."""
from __future__ import annotations

from pathlib import Path

HELP = "write a run's model as ONNX, its input scaling inside"
DESCRIPTION = ("Write a finished run's model as an ONNX graph that takes raw inputs (as mlp evaluate reads them) and "
               "gives class probabilities.")


def add_arguments(p):
    p.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a finished run folder (its model.safetensors) or a model file mlp train wrote")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="what to write")
    p.add_argument("--out", required=True, help="file to write, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 20; 13 or later)")
    p.add_argument("--logits", action="store_true",
                   help="output the last layer's values instead of class probabilities")


def run(args) -> Path:
    from ..commands.runs import check_reading_context, model_file
    from ..restore import load
    from . import to_onnx

    path = model_file(args.run)
    ck = load(path)
    check_reading_context(ck.extra, path)  # the scaling goes into the graph: refused if absent or forged
    out = to_onnx(ck.model, args.out, scaler=ck.extra["scaling"], opset=args.opset, probabilities=not args.logits)
    what = "logits" if args.logits else "class probabilities"
    print(f"wrote {out}: float32 inputs of {ck.model.in_features} raw features (the run's scaling inside) -> "
          f"{what} ({ck.extra.get('dataset', 'unknown dataset')}, {path})")
    return out
