"""Optimizers as configurations of the update rules of the optimizer table (``kernels/optimizers.py``).

State (velocity, moments) is flat arrays shaped like the parameter buffer, named by the table; one ``step``
is one call of one kernel (``optimizer_update`` with the rule's name) over every parameter. The step's
scalars are folded here, once: the scheduled learning rate, weight decay, the global-norm clipping factor and
the rule's own (``scalars``: Adam's bias corrections, AdamW's and Lion's decay, Adagrad's decayed rate), and
reach the kernel as one record laid out by the table (``kernels/hyper.py``). The per-element maths is the
table's.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..kernels import hyper, reference
from ..kernels.optimizers import RULES
from .schedules import Schedule


class Optimizer:
    rule = "sgd"  # its entry of the optimizer table: the kernel's rule, its record hyper.FIELDS[rule], its state

    def __init__(self, lr: float, *, weight_decay: float = 0.0, clip_norm: float | None = None,
                 clip_value: float | None = None, schedule: Schedule | None = None):
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"learning rate lr must be a positive number, got {lr!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay!r}")
        for name, value in (("clip_norm", clip_norm), ("clip_value", clip_value)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
        self.lr, self.weight_decay, self.schedule = float(lr), float(weight_decay), schedule
        self.clip_norm, self.clip_value = clip_norm, clip_value
        self.step_count = 0
        self.lr_scale = 1.0  # multiplied in by ReduceLROnPlateau
        self.state: dict = {}
        self.be = None

    # -- hyper-parameters ----------------------------------------------------------------------
    def hyper(self) -> dict:
        """Rule-specific keyword arguments of the update kernel."""
        return {}

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable): ``from_config`` rebuilds an equal optimizer."""
        cfg = {"lr": self.lr, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
               "clip_value": self.clip_value, **self.hyper()}
        if self.schedule is not None:
            cfg["schedule"] = {"class": type(self.schedule).__name__, **self.schedule.config()}
        return cfg

    @staticmethod
    def from_config(name: str, config: dict) -> "Optimizer":
        """The optimizer of class ``name`` built from ``config()`` output."""
        from .schedules import SCHEDULES

        classes = {cls.__name__: cls for cls in OPTIMIZERS.values()}
        if name not in classes:
            raise ValueError(f"unknown optimizer class {name!r}")
        config = dict(config)
        schedule = config.pop("schedule", None)
        if schedule is not None:
            schedule = dict(schedule)
            kinds = {cls.__name__: cls for cls in SCHEDULES.values()}
            kind = schedule.pop("class", None)
            if kind not in kinds:
                raise ValueError(f"unknown schedule class {kind!r}")
            config["schedule"] = kinds[kind](**schedule)
        return classes[name](**config)

    @staticmethod
    def rebuild(name: str, config: dict, state: dict, be, params) -> "Optimizer":
        """An optimizer from ``config()`` and ``state_dict()`` output, bound to ``params`` on ``be``."""
        optimizer = Optimizer.from_config(name, config)
        optimizer.load_state_dict(state)
        optimizer.init(be, params)
        return optimizer

    def current_lr(self) -> float:
        """The learning rate the next update will use."""
        return self._lr_after(self.step_count)

    def _lr_after(self, updates: int) -> float:
        """The learning rate of the update that follows ``updates`` updates."""
        lr = self.schedule(self.lr, updates) if self.schedule is not None else self.lr
        return lr * self.lr_scale

    # -- state -------------------------------------------------------------------------------
    @property
    def state_names(self) -> tuple:
        return RULES[self.rule].state

    initial_value = 0.0  # what state arrays start at

    def init(self, be, params):
        """Allocate state like ``params`` (or take state loaded by ``load_state_dict``)."""
        loaded, self._loaded = getattr(self, "_loaded", None), None
        if loaded is not None and any(v.shape != tuple(params.shape) for v in loaded.values()):
            raise ValueError(f"loaded optimizer state does not match {tuple(params.shape)} parameters")
        self.be = be

        def state(name):  # the backend's zeros (NumPy: in huge pages: read whole every step), then filled
            array = be.zeros(params.shape)
            if loaded:
                array[...] = be.asarray(loaded[name])
            elif self.initial_value != 0:
                array[...] = be.asarray(np.full(tuple(params.shape), self.initial_value))
            return array
        self.state = {n: state(n) for n in self.state_names}

    def to(self, be):
        """Move the state arrays to another backend (keeps values and step count)."""
        self.state = {k: be.asarray(to_numpy(v)) for k, v in self.state.items()}
        self.be = be

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "lr_scale": self.lr_scale,
                **{k: np.array(to_numpy(v)) for k, v in self.state.items()}}

    def load_state_dict(self, state: dict):
        """Restore a ``state_dict``; arrays reach the device at the next ``init`` (or now, if bound)."""
        missing = [k for k in ("step_count", *self.state_names) if k not in state]
        if missing:
            raise KeyError(f"optimizer state lacks {missing}")
        self.step_count = int(state["step_count"])
        self.lr_scale = float(state.get("lr_scale", 1.0))
        # copies, as PyTorch takes them: the caller's arrays must not change when this optimizer steps
        self._loaded = {k: np.array(to_numpy(state[k]), copy=True) for k in self.state_names}
        if self.be is not None and self.state_names:  # already bound to parameters: take the state now
            self.init(self.be, self.be.zeros(self._loaded[self.state_names[0]].shape))

    def is_initialised_for(self, params) -> bool:
        return self.be is not None and all(v.shape == params.shape for v in self.state.values())

    # -- update ------------------------------------------------------------------------------
    def grad_scale(self, xp, grads):
        """Global-norm clipping factor ``min(1, clip_norm / norm)`` as a 0-d device array (None when off)."""
        if self.clip_norm is None:
            return None
        return xp.minimum(self.clip_norm / (reference.global_norm(xp, grads) + 1e-6), 1.0)

    def scalars(self, lr: float, step: int) -> dict:
        """The step's host scalars (``hyper.FIELDS[self.rule]`` but grad_scale and skip) for ``lr`` at ``step``."""
        return {"lr": lr, "l2": self.weight_decay, "clip": self.clip_value if self.clip_value is not None else math.inf}

    def records(self, count: int) -> list[list[float]]:
        """The scalar records of the next ``count`` updates (``hyper.FIELDS[self.rule]``, grad_scale 1, skip 0).

        They depend only on the step count, the schedule and ``lr_scale``, so a step program builds a whole
        epoch's at once and moves them to the device in one copy (``step(..., record=)`` then takes a row).
        """
        rows = []
        for k in range(1, count + 1):
            step = self.step_count + k
            rows.append(hyper.pack(self.rule, {**self.scalars(self._lr_after(step - 1), step), "grad_scale": 1.0,
                                               "skip": 0.0}))
        return rows

    def step(self, params, grads, ops, skip=None, record=None, host=None):
        """One update of the flat ``params`` from the flat ``grads``; call ``init`` first.

        ``skip``: a 0-d device array; where it is non-zero the kernel writes nothing (the step program's flag
        for a non-finite loss), read on the device, not here. The step count advances either way. ``record``:
        this update's row of ``records()`` already on the device (else it is built here, and copied). ``host``:
        what runs the record's completion written with array functions (the clipping factor, the skip flag): a
        step program's, which replays it with the step (default: run it now).
        """
        if not self.is_initialised_for(params):
            raise RuntimeError("optimizer state is not initialised for these parameters; call init(backend, params)")
        xp = self.be.xp
        if record is None:
            record = self.be.asarray(self.records(1)[0])  # the parameters' dtype and device
        self.step_count += 1
        if self.clip_norm is not None or skip is not None:
            (host or _now)(lambda: self._complete(xp, grads, skip, record))
        self.apply(ops, xp, params, grads, record)

    def _complete(self, xp, grads, skip, record):
        """The record's clipping factor (computed on the device: no host read of the norm) and skip flag."""
        scale = self.grad_scale(xp, grads)
        if scale is not None:
            record[hyper.GRAD_SCALE] = scale
        if skip is not None:
            record[hyper.SKIP] = xp.astype(skip, record.dtype)

    def apply(self, ops, xp, params, grads, record):
        states = [self.state[n] for n in self.state_names]
        ops.optimizer_update(xp, self.rule, params, grads, *states, *[None] * (2 - len(states)), record)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items() if v)})"


def _now(compute):
    compute()


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (``v = m v - lr g; p += v``) or Nesterov momentum.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    momentum : float, default 0.0
        Momentum factor (0: plain SGD).
    nesterov : bool, default False
        Nesterov's look-ahead form of momentum.
    **kwargs
        Options every optimizer takes: ``weight_decay`` (float, default 0: L2 added to the gradient; decoupled
        for AdamW and Lion), ``clip_norm`` (clip the gradient's global norm), ``clip_value`` (clip each gradient
        entry), ``schedule`` (a :class:`StepDecay`, :class:`ExponentialDecay` or :class:`CosineDecay`).
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs: Any):
        super().__init__(lr, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.rule = "nesterov" if nesterov else "momentum" if momentum else "sgd"

    def hyper(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def scalars(self, lr, step):
        extra = {"momentum": self.momentum} if self.rule != "sgd" else {}
        return {**super().scalars(lr, step), **extra}


class Momentum(SGD):
    """SGD with momentum 0.9 by default (``v = m v - lr g; p += v``).

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    momentum : float, default 0.9
        Momentum factor.
    **kwargs
        Options every optimizer takes: ``weight_decay`` (float, default 0: L2 added to the gradient; decoupled
        for AdamW and Lion), ``clip_norm`` (clip the gradient's global norm), ``clip_value`` (clip each gradient
        entry), ``schedule`` (a :class:`StepDecay`, :class:`ExponentialDecay` or :class:`CosineDecay`).
    """
    def __init__(self, lr: float = 0.01, momentum: float = 0.9, **kwargs: Any):
        super().__init__(lr, momentum=momentum, **kwargs)


class Nesterov(SGD):
    """SGD with Nesterov momentum.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    momentum : float, default 0.9
        Momentum factor.
    **kwargs
        Options every optimizer takes: ``weight_decay`` (float, default 0: L2 added to the gradient; decoupled
        for AdamW and Lion), ``clip_norm`` (clip the gradient's global norm), ``clip_value`` (clip each gradient
        entry), ``schedule`` (a :class:`StepDecay`, :class:`ExponentialDecay` or :class:`CosineDecay`).
    """
    def __init__(self, lr: float = 0.01, momentum: float = 0.9, **kwargs: Any):
        kwargs["nesterov"] = True
        super().__init__(lr, momentum=momentum, **kwargs)


class RMSProp(Optimizer):
    """RMSProp: ``s = rho s + (1 - rho) g^2; p -= lr g / (sqrt(s) + eps)``.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate.
    rho : float, default 0.9
        Decay of the running mean of squared gradients.
    eps : float, default 1e-8
        Added to the denominator.
    **kwargs
        Options every optimizer takes: ``weight_decay`` (float, default 0: L2 added to the gradient; decoupled
        for AdamW and Lion), ``clip_norm`` (clip the gradient's global norm), ``clip_value`` (clip each gradient
        entry), ``schedule`` (a :class:`StepDecay`, :class:`ExponentialDecay` or :class:`CosineDecay`).
    """
    rule = "rmsprop"

    def __init__(self, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-8, **kwargs: Any):
        super().__init__(lr, **kwargs)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.rho, self.eps = float(rho), float(eps)

    def hyper(self):
        return {"rho": self.rho, "eps": self.eps}

    def scalars(self, lr, step):
        return {**super().scalars(lr, step), "rho": self.rho, "one_minus_rho": 1.0 - self.rho, "eps": self.eps}


class Adagrad(Optimizer):
    """Adagrad as ``torch.optim.Adagrad``: ``s += g^2; p -= lr_t g / (sqrt(s) + eps)``.

    ``lr_t = lr / (1 + (t - 1) lr_decay)`` at update ``t``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    lr_decay : float, default 0.0
        Learning-rate decay per update.
    eps : float, default 1e-10
        Added to the denominator.
    initial_accumulator_value : float, default 0.0
        Where the sums of squared gradients start.
    **kwargs
        Options every optimizer takes: ``weight_decay`` (float, default 0: L2 added to the gradient; decoupled
        for AdamW and Lion), ``clip_norm`` (clip the gradient's global norm), ``clip_value`` (clip each gradient
        entry), ``schedule`` (a :class:`StepDecay`, :class:`ExponentialDecay` or :class:`CosineDecay`).
    """

    rule = "adagrad"

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, eps: float = 1e-10,
                 initial_accumulator_value: float = 0.0, **kwargs: Any):
        super().__init__(lr, **kwargs)
        if not lr_decay >= 0:
            raise ValueError(f"lr_decay must be non-negative, got {lr_decay!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        if not initial_accumulator_value >= 0:
            raise ValueError(f"initial_accumulator_value must be non-negative, got {initial_accumulator_value!r}")
        self.lr_decay, self.eps = float(lr_decay), float(eps)
        self.initial_value = float(initial_accumulator_value)

    def hyper(self):
        return {"lr_decay": self.lr_decay, "eps": self.eps, "initial_accumulator_value": self.initial_value}

    def scalars(self, lr, step):
        return {**super().scalars(lr / (1.0 + (step - 1) * self.lr_decay), step), "eps": self.eps}


class Adam(Optimizer):
    """Adam with bias correction; ``decoupled=True`` (AdamW) decays weights outside the gradient.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate.
    beta1 : float, default 0.9
        Decay of the first-moment estimate.
    beta2 : float, default 0.999
        Decay of the second-moment estimate.
    eps : float, default 1e-8
        Added to the denominator.
    decoupled : bool, default False
        Apply ``weight_decay`` to the parameters directly (AdamW) instead of adding it to the gradient.
    **kwargs
        Options every optimizer takes: ``weight_decay`` (float, default 0: L2 added to the gradient; decoupled
        for AdamW and Lion), ``clip_norm`` (clip the gradient's global norm), ``clip_value`` (clip each gradient
        entry), ``schedule`` (a :class:`StepDecay`, :class:`ExponentialDecay` or :class:`CosineDecay`).
    """

    rule = "adam"

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 decoupled: bool = False, **kwargs: Any):
        super().__init__(lr, **kwargs)
        self.decoupled = bool(decoupled)
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {b!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def hyper(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps, "decoupled": self.decoupled}

    def scalars(self, lr, step):
        # Adam: weight decay as L2 in the gradient; AdamW (decoupled): p *= 1 - lr wd, outside it.
        wd = self.weight_decay
        return {**super().scalars(lr, step), "l2": 0.0 if self.decoupled else wd,
                "decay": 1.0 - lr * wd if self.decoupled else 1.0,
                "beta1": self.beta1, "one_minus_beta1": 1.0 - self.beta1,
                "beta2": self.beta2, "one_minus_beta2": 1.0 - self.beta2, "eps": self.eps,
                "step_size": lr / (1.0 - self.beta1**step), "inv_sqrt_bias2": 1.0 / math.sqrt(1.0 - self.beta2**step)}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter), as ``torch.optim.AdamW``.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate.
    weight_decay : float, default 0.01
        Decoupled weight decay: ``p -= lr * weight_decay * p`` each update.
    **kwargs
        ``beta1``, ``beta2``, ``eps`` as :class:`Adam`'s; ``clip_norm``, ``clip_value``, ``schedule``.
    """
    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.01, **kwargs: Any):
        kwargs["decoupled"] = True
        super().__init__(lr, weight_decay=weight_decay, **kwargs)


class Lion(Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    ``p -= lr (sign(beta1 m + (1 - beta1) g) + wd p); m = beta2 m + (1 - beta2) g``; the weight decay is
    decoupled, as the paper's.

    Parameters
    ----------
    lr : float, default 1e-4
        Learning rate (every entry moves by ``lr``: the paper uses 3-10x smaller rates than Adam's).
    beta1 : float, default 0.9
        Interpolation of momentum and gradient for the update's sign.
    beta2 : float, default 0.99
        Decay of the momentum.
    **kwargs
        Options every optimizer takes: ``weight_decay`` (float, default 0: L2 added to the gradient; decoupled
        for AdamW and Lion), ``clip_norm`` (clip the gradient's global norm), ``clip_value`` (clip each gradient
        entry), ``schedule`` (a :class:`StepDecay`, :class:`ExponentialDecay` or :class:`CosineDecay`).
    """

    rule = "lion"

    def __init__(self, lr: float = 1e-4, beta1: float = 0.9, beta2: float = 0.99, **kwargs: Any):
        super().__init__(lr, **kwargs)
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {b!r}")
        self.beta1, self.beta2 = float(beta1), float(beta2)

    def hyper(self):
        return {"beta1": self.beta1, "beta2": self.beta2}

    def scalars(self, lr, step):
        return {**super().scalars(lr, step), "l2": 0.0, "decay": 1.0 - lr * self.weight_decay,
                "beta1": self.beta1, "one_minus_beta1": 1.0 - self.beta1,
                "beta2": self.beta2, "one_minus_beta2": 1.0 - self.beta2}


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "rmsprop": RMSProp, "adagrad": Adagrad,
              "adam": Adam, "adamw": AdamW, "lion": Lion}


def get_optimizer(opt: str | Optimizer, **kwargs: Any) -> Optimizer:
    """An Optimizer from an instance (returned as is) or a name.

    Parameters
    ----------
    opt : str or Optimizer
        ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"rmsprop"``, ``"adagrad"``, ``"adam"``, ``"adamw"``,
        ``"lion"``, or an Optimizer.
    **kwargs
        Constructor arguments for a name (``lr``, ``weight_decay``, ...).

    Returns
    -------
    Optimizer
        The optimizer.
    """
    if isinstance(opt, Optimizer):
        return opt
    if isinstance(opt, str) and opt.lower() in OPTIMIZERS:
        return OPTIMIZERS[opt.lower()](**kwargs)
    raise ValueError(f"unknown optimizer {opt!r}; choose one of {', '.join(OPTIMIZERS)}")
