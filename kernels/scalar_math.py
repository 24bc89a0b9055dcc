"""Scalar maths that each compile target implements its own way, named once for the element functions.

``typed(value, like)`` is the constant ``value`` in the type of the scalar ``like``: a bare Python float in
compiled float32 code would promote the arithmetic to float64 (half the SIMD width, scalar libm calls).

In plain Python (and under the CUDA simulator) these are ``math``'s functions. ``cpu.py`` overloads
them inside compiled code with float32 versions that LLVM vectorises (libm's are scalar without SVML);
``cuda.py`` maps them to the device's own ``math`` functions.
"""
import math


def fast_exp(x):
    return math.exp(x)


def fast_expm1(x):
    return math.expm1(x)


def fast_log1p(x):
    return math.log1p(x)


def fast_tanh(x):
    return math.tanh(x)


def typed(value, like):
    return type(like)(value)
