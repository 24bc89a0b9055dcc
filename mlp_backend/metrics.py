"""Metrics on host arrays (any backend's arrays are copied to NumPy first)."""
from __future__ import annotations

import numpy as np

from typing import Sequence

from .backend import to_numpy
from .types import ArrayLike


def _labels(y_true, y_pred):
    y_true, y_pred = np.asarray(to_numpy(y_true)).ravel(), np.asarray(to_numpy(y_pred)).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    return y_true, y_pred


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """The fraction of labels predicted right.

    Parameters
    ----------
    y_true : array_like
        True labels, any array library.
    y_pred : array_like
        Predicted labels, the same number.

    Returns
    -------
    float
        Between 0 and 1.
    """
    y_true, y_pred = _labels(y_true, y_pred)
    if y_true.size == 0:
        raise ValueError("accuracy of 0 samples is undefined")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]``: samples of true class i predicted as j (as scikit-learn's, for labels 0..K-1).

    Parameters
    ----------
    y_true : array_like
        True labels.
    y_pred : array_like
        Predicted labels.
    num_classes : int, optional
        K (default: one more than the largest label seen).

    Returns
    -------
    numpy.ndarray
        (K, K) integer counts.
    """
    y_true, y_pred = _labels(y_true, y_pred)
    y_true, y_pred = y_true.astype(np.int64), y_pred.astype(np.int64)
    if num_classes is None:
        num_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes - 1}]")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def classification_report(y_true: ArrayLike, y_pred: ArrayLike, class_names: Sequence[str] | None = None,
                          num_classes: int | None = None, as_dict: bool = False, digits: int = 4) -> str | dict:
    """Per-class precision, recall, F1 and support with macro and weighted averages.

    Undefined ratios (no predictions or no samples of a class) count as 0.

    Parameters
    ----------
    y_true : array_like
        True labels.
    y_pred : array_like
        Predicted labels.
    class_names : sequence of str, optional
        A name per class, for the rows (default: the class numbers).
    num_classes : int, optional
        The number of classes (default: one more than the largest label seen).
    as_dict : bool, default False
        Return a dict shaped like scikit-learn's ``output_dict=True`` instead of text.
    digits : int, default 4
        Decimals in the text.

    Returns
    -------
    str or dict
        The aligned text report, or the dict.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    k = cm.shape[0]
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes")
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / cm.sum(axis=0))
        recall = np.nan_to_num(tp / support)
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    total = int(support.sum())
    report = {name: {"precision": float(p), "recall": float(r), "f1-score": float(f), "support": int(s)}
              for name, p, r, f, s in zip(names, precision, recall, f1, support)}
    report["accuracy"] = float(tp.sum() / total) if total else 0.0
    weights = support / total if total else np.zeros(k)
    for avg, w in (("macro avg", np.full(k, 1.0 / k)), ("weighted avg", weights)):
        report[avg] = {"precision": float(w @ precision), "recall": float(w @ recall),
                       "f1-score": float(w @ f1), "support": total}
    if as_dict:
        return report
    width = max(len(n) for n in [*names, "weighted avg"])
    lines = [f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>9}", ""]
    row = lambda n, d: (f"{n:>{width}}  {d['precision']:>9.{digits}f}  {d['recall']:>9.{digits}f}  "
                        f"{d['f1-score']:>9.{digits}f}  {d['support']:>9}")
    lines += [row(n, report[n]) for n in names]
    lines += ["", f"{'accuracy':>{width}}  {'':>9}  {'':>9}  {report['accuracy']:>9.{digits}f}  {total:>9}"]
    lines += [row(n, report[n]) for n in ("macro avg", "weighted avg")]
    return "\n".join(lines)


def regression_scores(y_true: ArrayLike, y_pred: ArrayLike) -> dict:
    """MSE, MAE and R² (coefficient of determination; 0.0 when y_true is constant).

    Parameters
    ----------
    y_true : array_like
        True values.
    y_pred : array_like
        Predicted values, the same shape.

    Returns
    -------
    dict
        ``{"mse": ..., "mae": ..., "r2": ...}``.
    """
    y_true = np.asarray(to_numpy(y_true), dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(to_numpy(y_pred), dtype=np.float64).reshape(y_true.shape)
    err = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean(axis=0)) ** 2))
    return {"mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err))),
            "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else 0.0}
