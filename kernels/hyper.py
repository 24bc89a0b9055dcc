"""The optimizer's per-step scalars as one small named record: a 1-D array in the parameters' dtype.

The optimizer folds its scalars once per step (schedule, bias corrections, decoupled decay: see
``mlp_backend/optim/optimizers.py``) and every update kernel (reference, CPU, CUDA) reads them from this
array by the slot names below. Being an array on the parameters' device, it is also what a captured
step program can keep on the device and advance there.
"""
from __future__ import annotations

# Slots every rule has. ``skip`` (0 or 1) makes the kernel leave parameters and state as they are: the step
# program sets it on the device when a loss is not finite, so no host read is needed before the update.
LR, L2, GRAD_SCALE, CLIP, SKIP = 0, 1, 2, 3, 4
COMMON = ("lr", "l2", "grad_scale", "clip", "skip")
# Rule-specific slots, after the common ones.
# ``1 - beta`` is a slot of its own: computed in the kernel it would need a literal 1, which promotes float32
# arithmetic to float64.
MOMENTUM = 5
RHO, ONE_MINUS_RHO, RMS_EPS = 5, 6, 7
BETA1, ONE_MINUS_BETA1, BETA2, ONE_MINUS_BETA2, ADAM_EPS, STEP_SIZE, INV_SQRT_BIAS2, DECAY = range(5, 13)

FIELDS = {
    "sgd": COMMON + ("momentum",),
    "rmsprop": COMMON + ("rho", "one_minus_rho", "eps"),
    "adam": COMMON + ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "eps", "step_size",
                      "inv_sqrt_bias2", "decay"),
}


def pack(rule: str, values: dict) -> list[float]:
    """The record of ``rule`` as a list in slot order; every field must be given, and no other."""
    fields = FIELDS[rule]
    if set(values) != set(fields):
        raise ValueError(f"{rule} scalars must be exactly {fields}, got {tuple(values)}")
    return [float(values[f]) for f in fields]
