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
from numba.extending import overload, register_jitable

from . import elementwise, optimizers
from .activations import ACTIVATIONS, TABLE
from .scalar_math import typed

for _fn in (elementwise.bce_element, optimizers.effective_grad, *(r.element for r in optimizers.RULES.values()),
            *(f for a in TABLE.values() for f in (a.forward, a.derivative))):
    register_jitable(inline="always")(_fn)


@overload(typed, inline="always")
def _typed_impl(value, like):
    if isinstance(like, types.Float) and like.bitwidth == 32:
        return lambda value, like: np.float32(value)
    return lambda value, like: np.float64(value)


def act_forward(z, code, alpha):
    return TABLE[ACTIVATIONS[code]].forward(z, alpha)


def act_derivative(dy, saved, code, alpha):
    return TABLE[ACTIVATIONS[code]].derivative(dy, saved, alpha)


def _constant(code):
    if not isinstance(code, types.IntegerLiteral):
        raise TypingError("the activation code must be a compile-time constant (a kernel's closure variable)")
    return TABLE[ACTIVATIONS[code.literal_value]]


@overload(act_forward, prefer_literal=True, inline="always")
def _act_forward_impl(z, code, alpha):
    forward = _constant(code).forward
    return lambda z, code, alpha: forward(z, alpha)


@overload(act_derivative, prefer_literal=True, inline="always")
def _act_derivative_impl(dy, saved, code, alpha):
    derivative = _constant(code).derivative
    return lambda dy, saved, code, alpha: derivative(dy, saved, alpha)


def rule_element(code, p, g, s0, s1, h):
    return optimizers.RULES[optimizers.NAMES[code]].element(p, g, s0, s1, h)


@overload(rule_element, prefer_literal=True, inline="always")
def _rule_element_impl(code, p, g, s0, s1, h):
    if not isinstance(code, types.IntegerLiteral):
        raise TypingError("the update rule's code must be a compile-time constant (a kernel's closure variable)")
    element = optimizers.RULES[optimizers.NAMES[code.literal_value]].element
    return lambda code, p, g, s0, s1, h: element(p, g, s0, s1, h)
