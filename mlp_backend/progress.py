"""What training shows while it runs: a tqdm bar per epoch and one line per epoch (``fit(verbose=...)``, ``mlp``)."""
from __future__ import annotations

import sys


def epoch_line(logs: dict, epochs: int) -> str:
    """``epoch   3/10  loss 0.3456  acc 0.8724  val_loss ...  0.93s`` from an epoch's logs."""
    parts = [f"epoch {logs['epoch']:>3}/{epochs}", f"loss {logs['train_loss']:.4f}"]
    if "train_accuracy" in logs:
        parts.append(f"acc {logs['train_accuracy']:.4f}")
    if "val_loss" in logs:
        parts.append(f"val_loss {logs['val_loss']:.4f}")
    if "val_accuracy" in logs:
        parts.append(f"val_acc {logs['val_accuracy']:.4f}")
    parts.append(f"{logs['seconds']:.2f}s")
    return "  ".join(parts)


class Progress:
    """A bar per epoch (``bar``; on a terminal unless ``always``) and, with ``lines``, a line per epoch."""

    def __init__(self, epochs: int, *, bar: bool = True, lines: bool = True, always: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.epochs, self.lines = epochs, lines
        self.bar_enabled = bar and (always or self.stream.isatty())
        self.bar, self.epoch = None, 0

    def step(self, step: int, steps: int, loss: float):
        """``fit``'s ``on_step``: called as steps are read back (in bursts: the step program reads seldom)."""
        if not self.bar_enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.epoch += 1
            # smoothing=0: the rate (and ETA) averaged over the epoch; steps arrive in bursts as they are read
            self.bar = tqdm(total=steps, desc=f"epoch {self.epoch}/{self.epochs}", leave=False, unit="batch",
                            file=self.stream, smoothing=0)
        self.bar.update(1)
        if step % 20 == 0 or step == steps:
            self.bar.set_postfix(loss=f"{loss:.4f}")
        if step == steps:
            self.bar.close()
            self.bar = None

    def end_epoch(self, epoch: int, logs: dict):
        """``fit``'s ``on_epoch``."""
        if self.lines:
            print(epoch_line(logs, self.epochs), file=sys.stdout, flush=True)
