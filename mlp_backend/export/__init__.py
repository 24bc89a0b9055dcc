"""Trained models out of (and into) the project: ONNX, PyTorch, and skl2onnx for the estimators.

- :func:`to_onnx` writes a model (and, optionally, its input scaling) as an ONNX graph: raw inputs in,
  what ``predict_proba`` returns (or, with ``probabilities=False``, what ``forward`` returns) out.
- :func:`to_torch` / :func:`from_torch`: a ``torch.nn.Sequential`` with the same weights, and back.
- ``import mlp_backend.export.sklearn`` registers the estimators with skl2onnx, so ``skl2onnx.to_onnx`` converts
  pipelines that hold them as it does scikit-learn's own MLPs.

Needs the ``export`` extra (onnx, onnxruntime, skl2onnx) or torch; importing this module imports neither.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .onnx_file import onnx_model, to_onnx
from .torch_module import to_torch

if TYPE_CHECKING:
    from ..layers import Sequential

__all__ = ["to_onnx", "onnx_model", "to_torch", "from_torch"]


def from_torch(module: Any, **kwargs: Any) -> Sequential:
    """A :class:`~mlp_backend.Sequential` with the weights of a torch ``nn.Sequential``.

    Parameters
    ----------
    module : torch.nn.Sequential
        Linear, activation, BatchNorm1d, LayerNorm, Dropout and Softmax modules.
    **kwargs
        Passed to :class:`~mlp_backend.Sequential` (backend, device, seed, kernels).

    Returns
    -------
    Sequential
        See :meth:`Sequential.from_torch <mlp_backend.Sequential.from_torch>`.
    """
    from ..layers import Sequential

    return Sequential.from_torch(module, **kwargs)
