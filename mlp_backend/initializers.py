"""Weight initialisers, drawn on the host from the backend's seeded generator.

Each takes ``(backend, shape, fan_in, fan_out)`` and returns an array on the backend's device.
"""
from __future__ import annotations

import math
from functools import partial

from .kernels.activations import get as get_activation


def uniform(be, shape, fan_in, fan_out, scale=0.05):
    return be.uniform(shape, -scale, scale)


def normal(be, shape, fan_in, fan_out, std=0.05):
    return be.normal(shape, std)


def glorot_uniform(be, shape, fan_in, fan_out, factor=6.0):
    """U(-sqrt(factor / (fan_in + fan_out)), +...); ``glorot_uniform:2`` is scikit-learn's range for logistic
    units."""
    limit = math.sqrt(factor / (fan_in + fan_out))
    return be.uniform(shape, -limit, limit)


def glorot_normal(be, shape, fan_in, fan_out):
    return be.normal(shape, math.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform(be, shape, fan_in, fan_out):
    limit = math.sqrt(6.0 / fan_in)
    return be.uniform(shape, -limit, limit)


def he_normal(be, shape, fan_in, fan_out):
    return be.normal(shape, math.sqrt(2.0 / fan_in))


def lecun_normal(be, shape, fan_in, fan_out):
    return be.normal(shape, math.sqrt(1.0 / fan_in))


def zeros(be, shape, fan_in, fan_out):
    return be.zeros(shape)


INITIALIZERS = {
    f.__name__: f
    for f in (uniform, normal, glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_normal, zeros)
}

ARGUMENTS = {"uniform": "scale", "normal": "std", "glorot_uniform": "factor"}  # what 'name:value' sets


def get_initializer(init, activation: str = "identity"):
    """A callable from a name (``'he_normal'``, ``'auto'``, ``'uniform:0.1'``, ``'normal:0.01'``,
    ``'glorot_uniform:2'``) or a callable."""
    if callable(init):
        return init
    if not isinstance(init, str):
        raise TypeError(f"init must be a name or a callable, got {type(init).__name__}")
    if init == "auto":  # the activation table's choice: He for the ReLU family, LeCun for SELU, else Glorot
        init = get_activation(activation).init
    name, _, arg = init.partition(":")
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; choose one of {', '.join(INITIALIZERS)} or 'auto'")
    if not arg:
        return INITIALIZERS[name]
    if name not in ARGUMENTS:
        raise ValueError(f"initializer {name!r} takes no argument, got {init!r}")
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(f"initializer argument must be a number, got {init!r}") from None
    if not value > 0:
        raise ValueError(f"initializer scale must be positive, got {init!r}")
    return partial(INITIALIZERS[name], **{ARGUMENTS[name]: value})
