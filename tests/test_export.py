"""Models out of the project: ONNX graphs run by onnxruntime, skl2onnx pipelines, torch modules and back."""
import json
import warnings

import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.cli import main
from mlp_backend.export import from_torch, onnx_model, to_onnx, to_torch
from mlp_backend.kernels.activations import ACTIVATIONS

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

TOL = {"float32": 1e-5, "float64": 1e-12}


def _run(proto_or_path, X, name="input"):
    source = proto_or_path if isinstance(proto_or_path, str) else proto_or_path.SerializeToString()
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"]).run(None, {name: X})


def _trained(activation, norm, dtype, rng, alpha=None):
    """A small classifier trained a few steps (BatchNorm statistics and weights away from their start)."""
    layers = [mlp.Dense(7, 9, activation, alpha=alpha)]
    if norm == "batch":
        layers.append(mlp.BatchNorm1d(9))
    elif norm == "layer":
        layers.append(mlp.LayerNorm(9))
    layers += [mlp.Dropout(0.2), mlp.Dense(9, 4)]
    model = mlp.Sequential(layers, dtype=dtype, seed=1)
    X = rng.normal(size=(48, 7)).astype(dtype)
    model.fit(X, rng.integers(0, 4, 48), epochs=2, batch_size=16)
    return model, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_outputs_equal_predict_proba(activation, norm, dtype):
    model, X = _trained(activation, norm, dtype, np.random.default_rng(0))
    X = X * 2.0  # both signs and the tails of every activation
    (probabilities,) = _run(onnx_model(model), X)
    assert probabilities.dtype == np.dtype(dtype)
    np.testing.assert_allclose(probabilities, model.predict_proba(X), rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_older_opsets_get_the_formulas_of_gelu_and_layer_norm(dtype, opset):
    model, X = _trained("gelu", "layer", dtype, np.random.default_rng(1))
    proto = onnx_model(model, opset=opset, probabilities=False)
    assert "Gelu" not in {n.op_type for n in proto.graph.node}
    np.testing.assert_allclose(_run(proto, X)[0], model.forward(X), rtol=0, atol=TOL[dtype])


def test_activation_layers_softmax_and_the_alpha_of_each_activation():
    rng = np.random.default_rng(2)
    model = mlp.Sequential([mlp.Dense(5, 6), mlp.LeakyReLU(negative_slope=0.3), mlp.Dense(6, 6, "elu", alpha=0.4),
                            mlp.SELU(), mlp.Dense(6, 3), mlp.Softmax()], dtype="float64", seed=0)
    X = rng.normal(size=(30, 5)) * 3
    np.testing.assert_allclose(_run(onnx_model(model, probabilities=False), X)[0], model.forward(X), atol=1e-12)


def test_scaler_nodes_come_first(tmp_path):
    from sklearn.preprocessing import MinMaxScaler as SkMinMax
    from sklearn.preprocessing import StandardScaler

    from mlp_backend.data import MinMaxScaler, Standardizer

    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, size=(40, 7)).astype(np.float32)
    model = mlp.build_mlp([7, 8, 3], "tanh", seed=0)
    for scaler in (Standardizer().fit(raw), Standardizer(per_feature=False).fit(raw), MinMaxScaler().fit(raw),
                   StandardScaler().fit(raw), SkMinMax().fit(raw)):
        path = to_onnx(model, tmp_path / "m.onnx", scaler=scaler)
        onnx.checker.check_model(onnx.load(path), full_check=True)
        np.testing.assert_allclose(_run(str(path), raw)[0], model.predict_proba(scaler.transform(raw)),
                                   rtol=0, atol=1e-5, err_msg=type(scaler).__name__)


def test_a_layer_without_an_onnx_form_is_refused_by_name():
    class Doubling(mlp.Dense):  # a user's own layer: its forward is not Dense's
        def forward(self, x, training=False):
            return 2 * super().forward(x, training)

    model = mlp.Sequential([mlp.Dense(4, 5, "relu"), Doubling(5, 3)])
    with pytest.raises(ValueError, match=r"cannot export layer dense1 \(Doubling\)"):
        onnx_model(model)
    with pytest.raises(ValueError, match="cannot convert layer dense1 \\(Doubling\\) to torch"):
        to_torch(model)
    with pytest.raises(ValueError, match="opset must be between 13"):
        onnx_model(model, opset=9)


def test_mlp_export_reproduces_the_runs_test_accuracy(tmp_path, capsys):
    from mlp_backend.data import load_dataset

    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--hidden", "32,16", "--batch-size", "32",
                 "--batch-norm", "--val-split", "0.1", "--quiet", "--no-progress", "--out", str(run)]) == 0
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert "class probabilities" in capsys.readouterr().out
    data = load_dataset("digits")  # raw, as mlp evaluate reads it
    (probabilities,) = _run(str(tmp_path / "m.onnx"), data.X_test.astype(np.float32))
    right = int(np.sum(probabilities.argmax(axis=1) == data.y_test))
    recorded = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    assert right == round(recorded * len(data.y_test))
    # a model file that does not record the scaling is refused, never exported unscaled
    mlp.save_checkpoint(mlp.build_mlp([64, 8, 10]), tmp_path / "bare.safetensors")
    assert main(["export", str(tmp_path / "bare.safetensors"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "does not record the input scaling" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


# -- skl2onnx -------------------------------------------------------------------------------------------
skl2onnx = pytest.importorskip("skl2onnx")


def _pipeline_onnx(estimator, X, y, **options):
    import mlp_backend.export.sklearn  # noqa: F401  (registers the converters)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        pipe = make_pipeline(StandardScaler(), estimator).fit(X, y)
    proto = skl2onnx.to_onnx(pipe, X[:1].astype(np.float32), **options)
    return pipe, proto, _run(proto, X.astype(np.float32), name="X")


@pytest.mark.parametrize("labels", ["multiclass", "binary", "strings", "multilabel"])
def test_skl2onnx_converts_a_pipeline_with_our_classifier(labels):
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    from mlp_backend.estimators import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    y = {"multiclass": y, "binary": y % 2, "strings": np.array(["even", "odd", "three"])[y % 3],
         "multilabel": np.stack([y % 2, y % 3 == 0, y > 4], axis=1).astype(int)}[labels]
    ours, proto, (label, probabilities) = _pipeline_onnx(MLPClassifier((24,), max_iter=15, random_state=0), X, y,
                                                         options={"zipmap": False})
    np.testing.assert_array_equal(label, ours.predict(X))
    np.testing.assert_allclose(probabilities, ours.predict_proba(X), rtol=0, atol=1e-4)
    # the outputs scikit-learn's own MLP gets: names and types
    theirs = _pipeline_onnx(SkMLPClassifier((4,), max_iter=2, random_state=0), X, y, options={"zipmap": False})[1]
    described = lambda p: [(o.name, o.type.tensor_type.elem_type) for o in p.graph.output]
    assert described(proto) == described(theirs)


def test_skl2onnx_zipmap_as_for_scikit_learns_mlp():
    from sklearn.datasets import load_iris

    from mlp_backend.estimators import MLPClassifier

    X, y = load_iris(return_X_y=True)
    ours, _, (label, maps) = _pipeline_onnx(MLPClassifier((8,), max_iter=30, random_state=0), X, y)
    expected = ours.predict_proba(X)
    assert [sorted(m) for m in maps[:1]] == [[0, 1, 2]]
    np.testing.assert_allclose([[m[c] for c in range(3)] for m in maps], expected, atol=1e-4)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_skl2onnx_converts_a_pipeline_with_our_regressor(loss):
    from sklearn.datasets import load_diabetes

    from mlp_backend.estimators import MLPRegressor

    X, y = load_diabetes(return_X_y=True)
    ours, proto, (values,) = _pipeline_onnx(MLPRegressor(loss, (16,), max_iter=40, random_state=0), X, y)
    assert [o.name for o in proto.graph.output] == ["variable"]
    expected = ours.predict(X)
    np.testing.assert_allclose(values.ravel(), expected, rtol=1e-6, atol=1e-4)


# -- torch ----------------------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_torch_gives_the_same_outputs_and_from_torch_round_trips(dtype):
    model, X = _trained("gelu", "batch", dtype, np.random.default_rng(4))
    module = model.to_torch()
    assert not module.training
    with torch.no_grad():
        out = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, model.forward(X), rtol=0, atol=TOL[dtype])
    back = mlp.Sequential.from_torch(module)
    assert back.config() == model.config()
    np.testing.assert_array_equal(back.forward(X), model.forward(X))
    assert set(back.buffers()) == set(model.buffers())


def test_from_torch_reads_a_torch_model_and_refuses_what_it_cannot_express():
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.LayerNorm(8), nn.Dropout(0.1),
                           nn.Sequential(nn.Linear(8, 8), nn.ELU(alpha=0.5)), nn.Linear(8, 2), nn.Softmax(dim=-1))
    module.eval()
    model = from_torch(module, backend="numpy")
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "LayerNorm", "Dropout", "Dense", "Dense",
                                                               "Softmax"]
    assert model.layers[3].activation == "elu" and model.layers[3].alpha == 0.5
    X = np.random.default_rng(5).normal(size=(10, 5)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model.forward(X), module(torch.from_numpy(X)).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="approximate='none'"):
        from_torch(nn.Sequential(nn.Linear(3, 3), nn.GELU()))
    with pytest.raises(ValueError, match="cannot convert torch module Conv1d"):
        from_torch(nn.Sequential(nn.Conv1d(1, 1, 3)))
