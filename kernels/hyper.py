"""The optimizer's per-step scalars as one small named record: a 1-D array in the parameters' dtype.

The optimizer folds its scalars once per step (schedule, bias corrections, decoupled decay: see
``mlp_backend/optim/optimizers.py``) and every update kernel (reference, CPU, CUDA) reads them from this
array by slot. The layout of each rule's record is the optimizer table's (``optimizers.py``): the common
slots, then the rule's own fields. Being an array on the parameters' device, it is also what a captured step
program can keep on the device and advance there.
"""
from __future__ import annotations

from .optimizers import CLIP, COMMON, GRAD_SCALE, L2, LR, RULES, SKIP  # noqa: F401  (the common slots)

FIELDS = {name: rule.record for name, rule in RULES.items()}


def pack(rule: str, values: dict) -> list[float]:
    """The record of ``rule`` as a list in slot order; every field must be given, and no other."""
    fields = FIELDS[rule]
    if set(values) != set(fields):
        raise ValueError(f"{rule} scalars must be exactly {fields}, got {tuple(values)}")
    return [float(values[f]) for f in fields]
