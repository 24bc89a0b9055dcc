"""Makes the plain element functions callable from compiled code, on every Numba target.

The element maths (``activations.py``, ``optimizers.py``, ``elementwise.py``) is plain Python so that importing
the package needs no Numba; this module registers it with Numba (CPU and CUDA alike) and defines the
dispatch: ``act_forward(z, code, alpha)`` / ``act_derivative(dy, saved, code, alpha)`` and
``rule_element(code, p, g, s0, s1, h)`` resolve a compile-time constant ``code`` to that activation's or
update rule's element function, so each kernel is compiled per activation or rule into branch-free code that
LLVM vectorises. Called from plain Python (the CUDA simulator) they look the code up at run time.
"""
import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import overload

from . import elementwise, optimizers
from .activations import ACTIVATIONS, TABLE
from .scalar_math import typed


def act_forward(z, code, alpha):
    return TABLE[ACTIVATIONS[code]].forward(z, alpha)


def act_derivative(dy, saved, code, alpha):
    return TABLE[ACTIVATIONS[code]].derivative(dy, saved, alpha)


def rule_element(code, p, g, s0, s1, h):
    return optimizers.RULES[optimizers.NAMES[code]].element(p, g, s0, s1, h)


def register(overload, typing_error, target):
    """Registers the element functions, ``typed`` and the dispatch with one Numba extension API for ``target``.

    numba's own API ('generic': the CPU, and numba's built-in CUDA target) is registered on import; numba-cuda 0.2x
    and later compile CUDA kernels with a front end of their own, which inlines only what its own API registered
    (``numba_cuda.py`` registers that too, for 'cuda').
    """
    def constant(code, what, table):
        if not isinstance(code, types.IntegerLiteral):
            raise typing_error(f"the {what} code must be a compile-time constant (a kernel's closure variable)")
        return table(code.literal_value)

    def always(fn, literal=False):
        return overload(fn, inline="always", prefer_literal=literal, target=target)

    for fn in (elementwise.bce_element, optimizers.effective_grad, *(r.element for r in optimizers.RULES.values()),
               *(f for a in TABLE.values() for f in (a.forward, a.derivative))):
        overload(fn, inline="always", strict=False, target=target)(lambda *args, fn=fn: fn)

    @always(typed)
    def _typed_impl(value, like):
        if isinstance(like, types.Float) and like.bitwidth == 32:
            return lambda value, like: np.float32(value)
        return lambda value, like: np.float64(value)

    def activation(code):
        return TABLE[ACTIVATIONS[code]]

    @always(act_forward, literal=True)
    def _act_forward_impl(z, code, alpha):
        forward = constant(code, "activation", activation).forward
        return lambda z, code, alpha: forward(z, alpha)

    @always(act_derivative, literal=True)
    def _act_derivative_impl(dy, saved, code, alpha):
        derivative = constant(code, "activation", activation).derivative
        return lambda dy, saved, code, alpha: derivative(dy, saved, alpha)

    @always(rule_element, literal=True)
    def _rule_element_impl(code, p, g, s0, s1, h):
        element = constant(code, "update rule's", lambda c: optimizers.RULES[optimizers.NAMES[c]]).element
        return lambda code, p, g, s0, s1, h: element(p, g, s0, s1, h)


register(overload, TypingError, "generic")
