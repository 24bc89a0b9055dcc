"""skl2onnx converters for :class:`~mlp_backend.estimators.MLPClassifier` and ``MLPRegressor``.

Importing this module registers them (``register()`` again is harmless): ``skl2onnx.to_onnx(pipeline, X[:1])``
then converts pipelines holding our estimators with the outputs scikit-learn's own MLPs give — ``label`` and
``probabilities`` (a ZipMap of them unless ``options={"zipmap": False}``) for the classifier, ``variable`` for
the regressor — and the model's own activations, dtype and output link inside.
"""
from __future__ import annotations

import numpy as np

from . import onnx_graph


class _SkWriter:
    """The writer interface of ``onnx_graph`` over skl2onnx's scope and container."""

    def __init__(self, scope, container, dtype):
        self.scope, self.container = scope, container
        self.dtype, self.opset = np.dtype(dtype), container.target_opset

    def const(self, hint, array):
        from onnx import helper

        array = np.asarray(array)
        name = self.scope.get_unique_variable_name(hint)
        self.container.add_initializer(name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape),
                                       array.ravel().tolist())
        return name

    def op(self, op_type, inputs, domain="", **attributes):
        out = self.scope.get_unique_variable_name(op_type.lower())
        self.container.add_node(op_type, list(inputs), out, op_domain=domain,
                                name=self.scope.get_unique_operator_name(op_type), **attributes)
        return out


def _forward(scope, operator, container):
    """Cast the input to the model's dtype, run its layers and output link; returns (writer, output name,
    the operator's float type)."""
    from onnx import TensorProto, helper
    from skl2onnx.common.data_types import guess_proto_type

    estimator = operator.raw_operator
    w = _SkWriter(scope, container, estimator.model_.be.dtype)
    out_type = guess_proto_type(operator.inputs[0].type)
    if out_type != TensorProto.DOUBLE:
        out_type = TensorProto.FLOAT
    x = w.op("Cast", [operator.inputs[0].full_name], to=helper.np_dtype_to_tensor_dtype(w.dtype))
    x = onnx_graph.layers(w, x, estimator.model_)
    link = {"softmax": "softmax", "logistic": "sigmoid"}.get(estimator.out_activation_, estimator.out_activation_)
    x = onnx_graph.link(w, x, link)
    return w, w.op("Cast", [x], to=out_type), out_type


def convert_classifier(scope, operator, container):
    from onnx import TensorProto, helper

    estimator = operator.raw_operator
    w, p, out_type = _forward(scope, operator, container)
    label, proba = operator.outputs[0].full_name, operator.outputs[1].full_name
    binary = estimator.out_activation_ == "logistic" and not estimator._multilabel
    if binary:  # one logistic output: the probabilities of both classes
        one = np.ones((1, 1), dtype=helper.tensor_dtype_to_np_dtype(out_type))
        negative = w.op("Sub", [w.const("one", one), p])
        container.add_node("Concat", [negative, p], proba, axis=1, name=scope.get_unique_operator_name("Concat"))
    else:
        container.add_node("Identity", [p], proba, name=scope.get_unique_operator_name("Identity"))
    if estimator._multilabel:
        above = w.op("Binarizer", [p], domain="ai.onnx.ml", threshold=0.5)
        container.add_node("Cast", [above], label, to=TensorProto.INT64, name=scope.get_unique_operator_name("Cast"))
        return
    classes = estimator.classes_
    if np.issubdtype(classes.dtype, np.integer) or np.issubdtype(classes.dtype, np.floating) \
            or classes.dtype == np.bool_:
        names = w.const("classes", classes.astype(np.int64))
    else:
        names = scope.get_unique_variable_name("classes")
        container.add_initializer(names, TensorProto.STRING, [len(classes)],
                                  [str(c).encode("utf-8") for c in classes])
    index = w.op("ArgMax", [proba], axis=1)
    picked = w.op("ArrayFeatureExtractor", [names, index], domain="ai.onnx.ml")
    container.add_node("Reshape", [picked, w.const("shape", np.array([-1], dtype=np.int64))], label,
                       name=scope.get_unique_operator_name("Reshape"))


def convert_regressor(scope, operator, container):
    estimator = operator.raw_operator
    w, y, _ = _forward(scope, operator, container)
    container.add_node("Reshape", [y, w.const("shape", np.array([-1, estimator.n_outputs_], dtype=np.int64))],
                       operator.outputs[0].full_name, name=scope.get_unique_operator_name("Reshape"))


def _regressor_shape(operator):
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    calculate_linear_regressor_output_shapes(operator)
    operator.outputs[0].type.shape = [None, operator.raw_operator.n_outputs_]


def register():
    """Register the estimators' converters and shape calculators with skl2onnx."""
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    except ImportError as e:
        raise ImportError(f"the estimators' ONNX converters need skl2onnx: pip install 'mlp-backend[export]' "
                          f"({e})") from None
    from ..estimators import MLPClassifier, MLPRegressor

    update_registered_converter(MLPClassifier, "MlpBackendMLPClassifier", calculate_linear_classifier_output_shapes,
                                convert_classifier, options={"zipmap": [True, False, "columns"],
                                                             "output_class_labels": [False, True],
                                                             "nocl": [True, False]})
    update_registered_converter(MLPRegressor, "MlpBackendMLPRegressor", _regressor_shape, convert_regressor)


register()
