"""Per-element maths of binary cross-entropy, written once for every compiled target.

A plain Python function: ``cpu.py`` compiles it inline into its loops and ``cuda.py`` into its kernel;
under the CUDA simulator it runs as it is. (The activations' element functions are in ``activations.py``,
the optimizers' in ``optimizers.py``.)
"""
from .activations import sigmoid_forward
from .scalar_math import fast_exp, fast_log1p


def bce_element(x, t):
    """Binary cross-entropy of logit ``x`` against target ``t``, and its derivative in ``x``:
    ``(max(x, 0) - x t + log(1 + exp(-|x|)), sigmoid(x) - t)``; no exponential overflows."""
    return (x if x > 0 else x - x) - x * t + fast_log1p(fast_exp(-abs(x))), sigmoid_forward(x, x) - t
