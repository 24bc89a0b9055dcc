"""Inverted dropout: active only in training, scaled by 1/keep so inference needs no change."""
from __future__ import annotations

from .base import Layer


class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability ``rate`` and scale the rest by
    ``1 / (1 - rate)``; in evaluation, the identity.

    Masks come from the model's seeded generator: the same masks on NumPy, torch and array-api-strict.

    Parameters
    ----------
    rate : float, default 0.5
        The probability of dropping an input, in [0, 1).
    """
    kind = "dropout"
    plans_its_step = True

    def __init__(self, rate: float = 0.5):
        super().__init__()
        if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def config(self):
        return {"rate": self.rate}

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        be, ws = self.be, self.workspace
        key = (x, self.rate, be.rng)  # the generator drawn from, as the arrays, the very same object
        plan = None if ws is None else ws.planned(self, "forward", key)
        if plan is not None:  # an earlier step's draws, mask and product, bound to these arrays (Workspace.planned)
            calls, self._mask, y = plan
            ws.run(calls)
            return y
        mask, draws, out = (self.scratch("mask", x.shape), self.scratch("draws", x.shape, be.xp.float64),
                            self.scratch("y", x.shape))
        self._mask = be.keep_mask(x.shape, 1.0 - self.rate, x.dtype, out=mask, draws=draws)
        y = be.compute("multiply", x, self._mask, out=out)
        if ws is not None:
            ws.keep_plan(self, "forward", key, lambda: self._forward_plan(x, mask, draws, out, y))
        return y

    def _forward_plan(self, x, mask, draws, out, y):
        """The forward's calls bound to the arrays it just used, with the arrays they leave; None where a call does
        not bind or did not write into its scratch array."""
        if self._mask is not mask or y is not out:
            return None
        draw, product = self.be.bind_keep_mask(1.0 - self.rate, mask, draws), self.be.bind("multiply", x, mask, out=y)
        return None if draw is None or product is None else ((*draw, product), mask, y)

    def backward(self, dy, need_input_grad=True):
        if self._mask is None:
            return dy
        ws = self.workspace
        key = (dy, self._mask)
        plan = None if ws is None else ws.planned(self, "backward", key)
        if plan is not None:
            calls, dx = plan
            ws.run(calls)
            return dx
        into = self.scratch("dx", dy.shape)
        dx = self.be.compute("multiply", dy, self._mask, out=into)
        if ws is not None:
            ws.keep_plan(self, "backward", key, lambda: self._backward_plan(dy, into))
        return dx

    def _backward_plan(self, dy, into):
        call = None if into is None else self.be.bind("multiply", dy, self._mask, out=into)
        return None if call is None else ((call,), into)
