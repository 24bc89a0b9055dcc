"""Per-element maths of binary cross-entropy, and the scalar work of a training step's bookkeeping, written once
for every compiled target.

Plain Python functions: ``cpu.py`` compiles ``bce_element`` inline into its loops and ``cuda.py`` into its kernel,
and each compiles the bookkeeping functions as functions of their own (Numba's inliner warns on ``argmax_row``'s
loop); under the CUDA simulator they run as they are. (The activations' element functions are in
``activations.py``, the optimizers' in ``optimizers.py``.)
"""
import math

from .activations import sigmoid_forward
from .optimizers import SKIP
from .scalar_math import fast_exp, fast_log1p

LOSS_NOT_FINITE, GRADIENT_NOT_FINITE = 1, 2  # a training step's flag


def bce_element(x, t):
    """Binary cross-entropy of logit ``x`` against target ``t``, and its derivative in ``x``:
    ``(max(x, 0) - x t + log(1 + exp(-|x|)), sigmoid(x) - t)``; no exponential overflows."""
    return (x if x > 0 else x - x) - x * t + fast_log1p(fast_exp(-abs(x))), sigmoid_forward(x, x) - t


def argmax_row(x, i):
    """NumPy's argmax of row ``i`` of ``x``: the first largest value, or the first NaN."""
    best, top = 0, x[i, 0]
    nan = top != top
    for j in range(1, x.shape[1]):
        v = x[i, j]
        if not nan:
            if v != v:
                best, nan = j, True
            elif v > top:
                best, top = j, v
    return best


def record_step_scalars(value, counter, losses, record, records, flags, bad, grad_sum, copy_record, check,
                        check_grads):
    """``reference.record_step`` on one thread, ``value``, ``bad`` and ``grad_sum`` one-element arrays and the
    optional arrays stood in for where ``copy_record``, ``check`` or ``check_grads`` is False. False where the
    counter is outside the epoch's steps: nothing is written."""
    c = counter[0]
    inside = c >= 0 and c < losses.shape[0]
    if inside:
        v = value[0]
        losses[c] = v
        if check:
            flag = 0
            if math.isinf(v) or math.isnan(v):
                flag = LOSS_NOT_FINITE
            elif check_grads and (math.isinf(grad_sum[0]) or math.isnan(grad_sum[0])):
                flag = GRADIENT_NOT_FINITE
            flags[c] = flag
            if flag != 0 and bad[0] < 1:
                bad[0] = 1
        if copy_record:
            for j in range(record.shape[0]):
                record[j] = records[c, j]
            if check:
                record[SKIP] = bad[0]
        counter[0] = c + 1
    return inside
