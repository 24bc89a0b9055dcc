"""A model's layers as ONNX nodes, written through a small writer so that one emitter serves both a
stand-alone graph (:func:`to_onnx`) and skl2onnx's converters (``export/sklearn.py``).

A writer has ``dtype`` (the model's NumPy dtype), ``opset``, ``const(hint, array) -> name`` and
``op(op_type, inputs, domain="", **attributes) -> output name``.
"""
from __future__ import annotations

import numpy as np

from ..kernels import activations as table

MIN_OPSET = 13    # Softmax over the last axis as one node
DEFAULT_OPSET = 20  # the first with Gelu(approximate="tanh")
LINKS = ("identity", "softmax", "sigmoid", "exp")


class GraphWriter:
    """Collects nodes and initializers for :func:`onnx.helper.make_graph`."""

    def __init__(self, dtype, opset: int):
        self.dtype, self.opset = np.dtype(dtype), opset
        self.nodes, self.initializers, self._count = [], [], 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, array) -> str:
        from onnx import numpy_helper

        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs, domain: str = "", **attributes) -> str:
        from onnx import helper

        out = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], domain=domain or None, **attributes))
        return out


def scalar(w, value) -> str:
    return w.const("c", np.asarray(value, dtype=w.dtype))


# -- activations: the table's ONNX operator, or its formula where ONNX or onnxruntime lacks one -------------
def _exp_minus_one(w, x):  # exp(min(x, 0)) - 1: ONNX has no expm1
    return w.op("Sub", [w.op("Exp", [w.op("Min", [x, scalar(w, 0.0)])]), scalar(w, 1.0)])


def _positive_or(w, x, otherwise):
    return w.op("Where", [w.op("Greater", [x, scalar(w, 0.0)]), x, otherwise])


def _leaky_relu(w, x, alpha):
    return _positive_or(w, x, w.op("Mul", [x, scalar(w, alpha)]))


def _elu(w, x, alpha):
    return _positive_or(w, x, w.op("Mul", [_exp_minus_one(w, x), scalar(w, alpha)]))


def _selu(w, x, alpha):
    return w.op("Mul", [_elu(w, x, table.SELU_ALPHA), scalar(w, table.SELU_SCALE)])


def _gelu(w, x, alpha):  # x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), as the kernels compute it
    cube = w.op("Mul", [w.op("Mul", [x, x]), x])
    inner = w.op("Add", [x, w.op("Mul", [cube, scalar(w, table.GELU_C)])])
    return w.op("Mul", [x, w.op("Sigmoid", [w.op("Mul", [inner, scalar(w, 2 * table.GELU_K)])])])


# Gelu is an operator from opset 20 on; in float64 onnxruntime has no kernels for LeakyRelu, Elu and Selu,
# and its Gelu agrees with the formula to about 1e-9 only
_FORMULAS = {"leaky_relu": _leaky_relu, "elu": _elu, "selu": _selu, "gelu": _gelu}


def _needs_formula(w, name: str) -> bool:
    return name in _FORMULAS and (w.dtype == np.float64 or (name == "gelu" and w.opset < 20))


def activation(w, x, name: str, alpha: float) -> str:
    act = table.get(name)
    if act.onnx == "Identity":
        return x
    if _needs_formula(w, name):
        return _FORMULAS[name](w, x, alpha)
    attributes = {"alpha": float(alpha)} if act.alpha is not None else {}
    if name == "selu":  # ONNX's defaults are rounded to float32; state the constants the kernels use
        attributes = {"alpha": table.SELU_ALPHA, "gamma": table.SELU_SCALE}
    if name == "gelu":
        attributes = {"approximate": "tanh"}
    return w.op(act.onnx, [x], **attributes)


def link(w, x, name: str) -> str:
    """The map from the last layer's output to what ``predict_proba`` (or a regressor's predict) returns."""
    if name not in LINKS:
        raise ValueError(f"unknown output link {name!r}; expected one of {', '.join(LINKS)}")
    if name == "identity":
        return x
    return w.op({"softmax": "Softmax", "sigmoid": "Sigmoid", "exp": "Exp"}[name], [x], **(
        {"axis": -1} if name == "softmax" else {}))


# -- layers ---------------------------------------------------------------------------------------------
def _host(array, dtype):
    from ..backend import to_numpy

    return np.asarray(to_numpy(array), dtype=dtype)


def _dense(w, x, layer):
    inputs = [x, w.const("W", _host(layer.params["W"], w.dtype))]
    if layer.use_bias:
        inputs.append(w.const("b", _host(layer.params["b"], w.dtype)))
    return activation(w, w.op("Gemm", inputs), layer.activation, layer.alpha)


def _batch_norm(w, x, layer):  # inference form: running statistics
    p, b = layer.params, layer.buffers
    inputs = [w.const(k, _host(v, w.dtype)) for k, v in (("gamma", p["gamma"]), ("beta", p["beta"]),
                                                         ("mean", b["running_mean"]), ("var", b["running_var"]))]
    return w.op("BatchNormalization", [x, *inputs], epsilon=layer.eps)


def _mean_last_axis(w, x):
    if w.opset < 18:  # the axes became an input in opset 18
        return w.op("ReduceMean", [x], axes=[-1], keepdims=1)
    return w.op("ReduceMean", [x, w.const("axes", np.array([-1], dtype=np.int64))], keepdims=1)


def _layer_norm(w, x, layer):
    scale, bias = (w.const(k, _host(layer.params[k], w.dtype)) for k in ("gamma", "beta"))
    if w.opset >= 17 and w.dtype == np.float32:
        return w.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=layer.eps)
    # before opset 17, and in float64 (onnxruntime's kernel takes the variance as E[x^2] - E[x]^2, which
    # loses digits): the two-pass formula the layer computes
    centred = w.op("Sub", [x, _mean_last_axis(w, x)])
    var = _mean_last_axis(w, w.op("Mul", [centred, centred]))
    inv_std = w.op("Reciprocal", [w.op("Sqrt", [w.op("Add", [var, scalar(w, layer.eps)])])])
    return w.op("Add", [w.op("Mul", [w.op("Mul", [centred, inv_std]), scale]), bias])


def _activation_layer(w, x, layer):
    return activation(w, x, layer.activation, layer.alpha)


# by the class names of mlp_backend.layers (this package is imported by Sequential, so it names them)
_EMITTERS = {"Dense": _dense, "BatchNorm1d": _batch_norm, "LayerNorm": _layer_norm,
             "Dropout": lambda w, x, layer: x,  # identity in inference
             "Softmax": lambda w, x, layer: w.op("Softmax", [x], axis=-1),
             "Activation": _activation_layer, **{act.layer: _activation_layer for act in table.TABLE.values()}}


def builtin_kind(layer) -> str | None:
    """The class name of one of mlp_backend's own layers, else None (a user's subclass included: its forward
    may differ from what an exporter would write)."""
    cls = type(layer)
    return cls.__name__ if cls.__module__.startswith("mlp_backend.layers.") else None


def layers(w, x, model) -> str:
    """Every layer of ``model`` in inference form, from input ``x``; a layer without an ONNX form is refused
    by name."""
    for name, layer in zip(model.names, model.layers):
        emit = _EMITTERS.get(builtin_kind(layer))
        if emit is None:
            raise ValueError(f"cannot export layer {name} ({type(layer).__name__}) to ONNX: only mlp_backend's "
                             f"{', '.join(sorted(_EMITTERS))} have an ONNX form")
        x = emit(w, x, layer)
    return x


# -- input scaling --------------------------------------------------------------------------------------
def scaling_of(scaler) -> dict | None:
    """A scaler as the affine map ``(x - shift) / divide`` (then ``* 2 - 1`` for minmax), as stored in a
    run's checkpoint. Takes that dict itself, mlp_backend's Standardizer/MinMaxScaler, or scikit-learn's
    StandardScaler/MinMaxScaler."""
    from ..data import SCALERS, scaler_state

    if scaler is None or isinstance(scaler, dict):
        return scaler
    if isinstance(scaler, tuple(SCALERS.values())):
        return scaler_state(scaler)
    name = type(scaler).__name__
    if name == "StandardScaler" and hasattr(scaler, "scale_"):
        mean = scaler.mean_ if scaler.mean_ is not None else 0.0
        scale = scaler.scale_ if scaler.scale_ is not None else 1.0
        return {"kind": "standardizer", "mean": mean, "scale": scale}
    if name == "MinMaxScaler" and hasattr(scaler, "scale_"):  # x * scale_ + min_
        return {"kind": "minmax", "min": -np.asarray(scaler.min_) / scaler.scale_, "span": 1.0 / scaler.scale_,
                "low": 0.0, "high": 1.0}
    raise TypeError(f"cannot express a {name} as ONNX nodes: give a Standardizer, MinMaxScaler or their "
                    "scikit-learn counterparts (fitted)")


def scaling(w, x, state) -> str:
    """The scaler's nodes, in float32 as the run's own transform computes them."""
    if state is None:
        return x
    f32 = np.float32
    if state["kind"] == "standardizer":
        x = w.op("Sub", [x, w.const("mean", np.asarray(state["mean"], dtype=f32))])
        x = w.op("Div", [x, w.const("scale", np.asarray(state["scale"], dtype=f32))])
    elif state["kind"] == "minmax":
        x = w.op("Sub", [x, w.const("min", np.asarray(state["min"], dtype=f32))])
        x = w.op("Div", [x, w.const("span", np.asarray(state["span"], dtype=f32))])
        low, high = state.get("low", -1.0), state.get("high", 1.0)
        x = w.op("Add", [w.op("Mul", [x, w.const("c", f32(high - low))]), w.const("c", f32(low))])
    else:
        raise ValueError(f"unknown scaling kind {state['kind']!r}")
    return x
