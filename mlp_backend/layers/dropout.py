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
        be = self.be
        self._mask = be.keep_mask(x.shape, 1.0 - self.rate, x.dtype, out=self.scratch("mask", x.shape),
                                  draws=self.scratch("draws", x.shape, be.xp.float64))
        return be.compute("multiply", x, self._mask, out=self.scratch("y", x.shape))

    def backward(self, dy, need_input_grad=True):
        if self._mask is None:
            return dy
        return self.be.compute("multiply", dy, self._mask, out=self.scratch("dx", dy.shape))
