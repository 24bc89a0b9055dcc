"""Pictures (matplotlib, headless): training curves, confusion matrices, activation functions,
comparisons over seeds with mean ± std bands, and decision boundaries of 2-D problems."""
from __future__ import annotations

import math

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .types import ArrayLike, PathLike

if TYPE_CHECKING:
    from .layers import Sequential


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless: files only
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, ax=None, legend_size=None):
    """Legend and grid on ``ax`` (when given), then write the figure and free it."""
    if ax is not None:
        ax.legend(fontsize=legend_size)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def plot_loss(history: dict, path: PathLike):
    """Training loss per iteration with per-epoch train and validation losses on the same axis.

    Parameters
    ----------
    history : dict
        ``History.as_dict()`` or a run's ``history.csv`` read back: ``loss``, ``train_loss``, ``val_loss``,
        ``train_accuracy``, ``val_accuracy``.
    path : str or Path
        The PNG to write.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    iters = np.arange(1, len(history["loss"]) + 1)
    ax.plot(iters, history["loss"], lw=0.6, alpha=0.5, label="train loss per iteration")
    epochs = len(history["train_loss"])
    if epochs:
        per_epoch = len(iters) / epochs
        ends = per_epoch * np.arange(1, epochs + 1)
        ax.plot(ends, history["train_loss"], "o-", label="train loss (epoch mean)")
        if history.get("val_loss"):
            ax.plot(ends, history["val_loss"], "s-", label="validation loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    _save(fig, path, ax)


def plot_accuracy(history: dict, path: PathLike):
    """Training (and validation) accuracy per epoch.

    Parameters
    ----------
    history : dict
        ``History.as_dict()`` or a run's ``history.csv`` read back: ``loss``, ``train_loss``, ``val_loss``,
        ``train_accuracy``, ``val_accuracy``.
    path : str or Path
        The PNG to write.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history["train_accuracy"]) + 1)
    ax.plot(epochs, history["train_accuracy"], "o-", label="train")
    if history.get("val_accuracy"):
        ax.plot(epochs, history["val_accuracy"], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel("accuracy")
    _save(fig, path, ax)


def plot_confusion(cm: ArrayLike, class_names: Sequence[str] | None, path: PathLike,
                   title: str = "Confusion matrix (test)"):
    """Heatmap of row-normalised rates, annotated with the counts.

    Parameters
    ----------
    cm : array_like
        (K, K) counts, as :func:`mlp_backend.confusion_matrix` returns.
    class_names : sequence of str or None
        Tick labels (None: the class numbers).
    path : str or Path
        The PNG to write.
    title : str, default "Confusion matrix (test)"
        The title.
    """
    plt = _plt()
    cm = np.asarray(cm)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = cm.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.65 * k, 0.8 + 0.6 * k))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    _save(fig, path)


def plot_activations(path: PathLike):
    """Gallery of every activation in the table and its derivative (computed by the reference kernels).

    Parameters
    ----------
    path : str or Path
        The PNG to write.
    """
    import array_api_compat.numpy as xp

    from .kernels import reference
    from .kernels.activations import TABLE

    plt = _plt()
    entries = [a for a in TABLE.values() if a.name != "identity"]
    cols = 3
    rows = math.ceil(len(entries) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10, 3 * rows), squeeze=False)
    z = np.linspace(-4, 4, 801)
    for ax in axes.ravel()[len(entries):]:
        ax.axis("off")
    for ax, act in zip(axes.ravel(), entries):
        alpha = 0.1 if act.name == "leaky_relu" else (act.alpha or 0.0)
        y = reference.activation(xp, z.copy(), act.name, alpha)
        saved = y if act.saves == "output" else z
        dy = reference.activation_derivative(xp, np.ones_like(z), saved, act.name, alpha)
        ax.plot(z, y, label=act.name)
        ax.plot(z, dy, "--", label="derivative")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(act.name + (" (slope 0.1)" if act.name == "leaky_relu" else ""))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    _save(fig, path)


def plot_comparison(groups: dict, metric: str, path: PathLike, title: str | None = None):
    """Mean ± std over runs (seeds) of a per-epoch metric, one line and band per group label.

    Parameters
    ----------
    groups : dict
        ``{label: [history, ...]}``: the histories (dicts) of the runs of each group.
    metric : str
        The per-epoch metric: ``val_loss``, ``train_loss``, ``val_accuracy``, ``train_accuracy``.
    path : str or Path
        The PNG to write.
    title : str, optional
        The title (default: the metric).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, histories in groups.items():
        curves = [h[metric] for h in histories if h.get(metric)]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        values = np.array([c[:n] for c in curves], dtype=float)
        mean, std = values.mean(axis=0), values.std(axis=0)
        epochs = np.arange(1, n + 1)
        ax.plot(epochs, mean, "o-", label=f"{label} (n={len(curves)})")
        ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel(metric.replace("_", " "))
    several = any(len([h for h in hs if h.get(metric)]) > 1 for hs in groups.values())
    ax.set_title(title or metric.replace("_", " ") + (": mean ± std over seeds" if several else ""))
    _save(fig, path, ax, legend_size=8)


def plot_decision_boundary(model: Sequential, X: ArrayLike, y: ArrayLike, path: PathLike, resolution: int = 200):
    """Predicted class over a grid around 2-D data, with the samples on top.

    Parameters
    ----------
    model : Sequential
        A trained model with two input features.
    X : array_like
        (N, 2) inputs.
    y : array_like
        (N,) labels, for the points' colours.
    path : str or Path
        The PNG to write.
    resolution : int, default 200
        Grid points per axis.
    """
    plt = _plt()
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision boundaries need 2-D inputs, got shape {X.shape}")
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    from .backend import to_numpy

    pred = to_numpy(model.predict(grid)).reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(gx, gy, pred, alpha=0.3, cmap="tab10", levels=np.arange(pred.max() + 2) - 0.5)
    ax.scatter(X[:, 0], X[:, 1], c=np.asarray(y), cmap="tab10", s=12, edgecolors="k", linewidths=0.3)
    ax.set_title("decision boundary")
    _save(fig, path)
