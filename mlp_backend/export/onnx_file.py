"""A model (and its input scaling) as an ONNX file, built from ``onnx_graph``'s nodes."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import onnx_graph
from ..types import PathLike

if TYPE_CHECKING:
    from ..layers import Sequential


def _onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx package: pip install 'mlp-backend[export]' ({e})") from None
    return onnx


def onnx_model(model: Sequential, *, scaler: Any = None, opset: int | None = None, probabilities: bool = True) -> Any:
    """The ONNX ``ModelProto`` of :func:`to_onnx`, checked with ``onnx.checker``, not written anywhere.

    Parameters
    ----------
    model : Sequential
        The model to export.
    scaler : Standardizer, MinMaxScaler, sklearn scaler or dict, optional
        Input scaling placed as the graph's first nodes: the run's fitted ``Standardizer``/``MinMaxScaler``, a
        scikit-learn ``StandardScaler``/``MinMaxScaler``, or the ``scaling`` a run's checkpoint records. With
        it the input is float32 raw data.
    opset : int, optional
        The ONNX opset (default 20; GELU is its ``Gelu`` operator from 20, else its formula).
    probabilities : bool, default True
        Output class probabilities (softmax or sigmoid, as the model's loss implies: what ``predict_proba``
        returns); False outputs the last layer's values.

    Returns
    -------
    onnx.ModelProto
        The checked graph.
    """
    onnx = _onnx()
    from onnx import helper

    opset = onnx_graph.DEFAULT_OPSET if opset is None else int(opset)
    if not onnx_graph.MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset must be between {onnx_graph.MIN_OPSET} and {onnx.defs.onnx_opset_version()} "
                         f"(the installed onnx's newest), got {opset}")
    dtype = np.dtype(model.be.dtype)
    w = onnx_graph.GraphWriter(dtype, opset)
    state = onnx_graph.scaling_of(scaler)
    # a scaler computes in float32, as the run's own transform does; the model then casts to its dtype
    in_dtype = np.dtype(np.float32) if state is not None else dtype
    x = onnx_graph.scaling(w, "input", state)
    if in_dtype != dtype:
        x = w.op("Cast", [x], to=helper.np_dtype_to_tensor_dtype(dtype))
    x = onnx_graph.layers(w, x, model)
    if probabilities:
        x = onnx_graph.link(w, x, model.loss.link if model.loss is not None else "softmax")
    w.nodes.append(helper.make_node("Identity", [x], ["output"]))
    graph = helper.make_graph(
        w.nodes, "mlp_backend", [helper.make_tensor_value_info(
            "input", helper.np_dtype_to_tensor_dtype(in_dtype), [None, model.in_features])],
        [helper.make_tensor_value_info("output", helper.np_dtype_to_tensor_dtype(dtype),
                                       [None, model.out_features])], initializer=w.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="mlp-backend")
    proto.ir_version = min(proto.ir_version, _max_ir_version(opset))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _max_ir_version(opset: int) -> int:
    """The oldest IR version that carries ``opset``: what runtimes older than the onnx package still load."""
    from onnx import helper

    return min(ir for _, ir, op, *_ in helper.VERSION_TABLE if op >= opset)


def to_onnx(model: Sequential, path: PathLike, *, scaler: Any = None, opset: int | None = None,
            probabilities: bool = True) -> Path:
    """Write ``model`` as an ONNX graph at ``path``.

    Input ``input``: (N, features) in the model's dtype (float32 where ``scaler`` is given); output ``output``.
    Dense is Gemm, each activation its ONNX operator, BatchNorm1d and LayerNorm their inference forms; Dropout
    is left out. A layer without an ONNX form is refused by name.

    Parameters
    ----------
    model : Sequential
        The model to export.
    path : str or Path
        The ``.onnx`` file to write.
    scaler : Standardizer, MinMaxScaler, sklearn scaler or dict, optional
        Input scaling placed as the graph's first nodes: the run's fitted ``Standardizer``/``MinMaxScaler``, a
        scikit-learn ``StandardScaler``/``MinMaxScaler``, or the ``scaling`` a run's checkpoint records. With
        it the input is float32 raw data.
    opset : int, optional
        The ONNX opset (default 20; GELU is its ``Gelu`` operator from 20, else its formula).
    probabilities : bool, default True
        Output class probabilities (softmax or sigmoid, as the model's loss implies: what ``predict_proba``
        returns); False outputs the last layer's values.

    Returns
    -------
    Path
        The file written.
    """
    proto = onnx_model(model, scaler=scaler, opset=opset, probabilities=probabilities)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(path)
    return path
