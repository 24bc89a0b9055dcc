"""Learning-rate schedules: pure functions of the update count (0 on the first update).

Plateau-based reduction needs validation results, so it is a callback
(:class:`mlp_backend.train.ReduceLROnPlateau`) that scales the optimizer's learning rate.
"""
from __future__ import annotations

import math


class Schedule:
    def __call__(self, base_lr: float, step: int) -> float:
        raise NotImplementedError

    def config(self) -> dict:
        return dict(vars(self))

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


def _positive(name, value, integer=False):
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return value


class StepDecay(Schedule):
    """Multiply the learning rate by ``factor`` every ``every`` updates.

    Parameters
    ----------
    factor : float
        What the learning rate is multiplied by at each step of the schedule.
    every : int
        Updates between steps.
    """

    def __init__(self, factor: float, every: int):
        self.factor = _positive("factor", factor)
        self.every = _positive("every", every, integer=True)

    def __call__(self, base_lr, step):
        return base_lr * self.factor ** (step // self.every)


class ExponentialDecay(Schedule):
    """``lr * rate ** (step / decay_steps)``: smooth decay by ``rate`` every ``decay_steps`` updates.

    Parameters
    ----------
    rate : float
        The decay factor per ``decay_steps`` updates.
    decay_steps : int, default 1
        Updates over which the learning rate is multiplied by ``rate``.
    """

    def __init__(self, rate: float, decay_steps: int = 1):
        self.rate = _positive("rate", rate)
        self.decay_steps = _positive("decay_steps", decay_steps, integer=True)

    def __call__(self, base_lr, step):
        return base_lr * self.rate ** (step / self.decay_steps)


class CosineDecay(Schedule):
    """Half a cosine from ``lr`` down to ``min_lr`` over ``total_steps`` updates, then ``min_lr``.

    Parameters
    ----------
    total_steps : int
        Updates over which the learning rate falls.
    min_lr : float, default 0.0
        The final learning rate.
    """

    def __init__(self, total_steps: int, min_lr: float = 0.0):
        self.total_steps = _positive("total_steps", total_steps, integer=True)
        if not min_lr >= 0:
            raise ValueError(f"min_lr must be non-negative, got {min_lr!r}")
        self.min_lr = float(min_lr)

    def __call__(self, base_lr, step):
        t = min(step, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))


SCHEDULES = {"step": StepDecay, "exponential": ExponentialDecay, "cosine": CosineDecay}
