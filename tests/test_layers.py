from functools import partial

import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.backend import to_numpy
from mlp_backend.kernels.activations import TABLE
from mlp_backend.gradcheck import check_layer_gradients, check_model_gradients

from conftest import AVAILABLE, BACKEND_DEVICES, backend_matrix, backends, tol

torch = pytest.importorskip("torch") if "torch" in AVAILABLE else None

LAYER_FACTORIES = {
    "dense": lambda: mlp.Dense(6, 4),
    "softmax": mlp.Softmax, "dropout": lambda: mlp.Dropout(0.3),
    "batchnorm": lambda: mlp.BatchNorm1d(6), "layernorm": lambda: mlp.LayerNorm(6),
}
for _act in TABLE.values():  # every activation of the table: as a Dense layer's and as a layer of its own
    _alpha = {} if _act.alpha is None else {_act.alpha_name: 0.3}
    LAYER_FACTORIES[f"dense_{_act.name}"] = partial(mlp.Dense, 6, 4, activation=_act.name,
                                                    alpha=None if _act.alpha is None else 0.7)
    LAYER_FACTORIES[_act.name] = partial(mlp.ACTIVATION_LAYERS[_act.layer], **_alpha)


def test_every_registered_layer_is_gradient_checked():
    checked = {type(f()).__name__ for f in LAYER_FACTORIES.values()}
    assert set(mlp.LAYERS) - {"Activation"} <= checked
    assert {a.layer for a in TABLE.values()} <= set(mlp.LAYERS)  # every table entry has its layer class


def test_every_activation_has_a_torch_oracle():
    assert set(TORCH_ACTIVATIONS) == set(TABLE)


@pytest.mark.parametrize("backend", backends(["numpy", "array_api_strict", "torch"]))
@pytest.mark.parametrize("kind", sorted(LAYER_FACTORIES))
def test_layer_gradients_match_finite_differences(kind, backend):
    # Inputs away from the ReLU kink so central differences are valid.
    x = np.random.default_rng(0).normal(size=(5, 6))
    x = np.where(np.abs(x) < 0.05, 0.1, x)
    result = check_layer_gradients(LAYER_FACTORIES[kind](), x, backend=backend, device=BACKEND_DEVICES[backend])
    assert result.ok, str(result)
    assert result.max_rel_error < 1e-5


def test_dense_flattens_nd_input_and_returns_gradient_in_its_shape():
    model = mlp.Sequential([mlp.Dense(12, 3)], dtype="float64")
    x = np.random.default_rng(0).normal(size=(4, 3, 4))
    out = model.forward(x, training=True)
    assert out.shape == (4, 3)
    dx = model.backward_to_input(np.ones((4, 3)))
    assert dx.shape == (4, 3, 4)
    assert check_model_gradients(model, x, np.array([0, 1, 2, 0])).ok


TORCH_ACTIVATIONS = {  # name -> (torch function of (z, alpha))
    "identity": lambda z, a: z, "relu": lambda z, a: torch.relu(z),
    "leaky_relu": lambda z, a: torch.nn.functional.leaky_relu(z, a), "sigmoid": lambda z, a: torch.sigmoid(z),
    "tanh": lambda z, a: torch.tanh(z), "elu": lambda z, a: torch.nn.functional.elu(z, a),
    "selu": lambda z, a: torch.selu(z), "gelu": lambda z, a: torch.nn.functional.gelu(z, approximate="tanh"),
}


def _torch_activation(name, alpha):
    return partial(TORCH_ACTIVATIONS[name], a=alpha)


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch oracle not installed")
@pytest.mark.parametrize("case", backend_matrix())
@pytest.mark.parametrize("act", list(TABLE))
def test_dense_forward_backward_match_torch(case, act):
    name, device, dtype, mode = case
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(7, 5)), rng.normal(size=(7, 3))
    model = mlp.Sequential([mlp.Dense(5, 3, activation=act, alpha=0.2 if act in ("leaky_relu", "elu") else None)],
                           backend=name, device=device, dtype=dtype, kernels=mode)
    W, b = model.state_dict()["dense0.W"], model.state_dict()["dense0.b"]
    tdt = getattr(torch, dtype)
    tx = torch.tensor(x, dtype=tdt, requires_grad=True)
    tw, tb = torch.tensor(W.T, dtype=tdt, requires_grad=True), torch.tensor(b + 0.1, dtype=tdt, requires_grad=True)
    model.set_parameter("dense0.b", b + 0.1)
    ty = _torch_activation(act, 0.2)(torch.nn.functional.linear(tx, tw, tb))
    ty.backward(torch.tensor(dy, dtype=tdt))
    be = model.be
    y = model.forward(be.asarray(x), training=True)
    dx = model.backward_to_input(be.asarray(dy))
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(to_numpy(y), ty.detach().numpy(), rtol=rtol * 10, atol=atol * 10)
    np.testing.assert_allclose(to_numpy(dx), tx.grad.numpy(), rtol=rtol * 10, atol=atol * 10)
    g = model.gradients()
    np.testing.assert_allclose(to_numpy(g["dense0.W"]), tw.grad.numpy().T, rtol=rtol * 10, atol=atol * 10)
    np.testing.assert_allclose(to_numpy(g["dense0.b"]), tb.grad.numpy(), rtol=rtol * 10, atol=atol * 10)


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch oracle not installed")
@pytest.mark.parametrize("kind", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("mode", ["auto", "reference"])
def test_norm_layers_match_torch(kind, mode):
    rng = np.random.default_rng(5)
    x, dy = rng.normal(size=(8, 6)), rng.normal(size=(8, 6))
    layer = mlp.BatchNorm1d(6) if kind == "batchnorm" else mlp.LayerNorm(6)
    model = mlp.Sequential([layer], dtype="float64", kernels=mode)
    tl = torch.nn.BatchNorm1d(6).double() if kind == "batchnorm" else torch.nn.LayerNorm(6).double()
    tx = torch.tensor(x, requires_grad=True)
    ty = tl(tx)
    ty.backward(torch.tensor(dy))
    y = model.forward(x, training=True)
    dx = model.backward_to_input(dy)
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-10)
    if kind == "batchnorm":
        np.testing.assert_allclose(model.buffers()["batchnorm0.running_var"], tl.running_var.numpy(), atol=1e-12)
        tl.eval()
        np.testing.assert_allclose(model.forward(x), tl(tx).detach().numpy(), atol=1e-10)


def test_dropout_is_identity_in_eval_and_scaled_mask_in_training():
    model = mlp.Sequential([mlp.Dropout(0.25)], dtype="float64", seed=1)
    x = np.ones((200, 50))
    np.testing.assert_array_equal(model.forward(x), x)
    y = model.forward(x, training=True)
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.02
    again = mlp.Sequential([mlp.Dropout(0.25)], dtype="float64", seed=1).forward(x, training=True)
    np.testing.assert_array_equal(y, again)  # seeded mask


def test_sequential_names_get_set_load_and_summary():
    model = mlp.build_mlp([784, 500, 250, 100, 10], "relu")
    assert list(model.parameters()) == [f"dense{i}.{p}" for i in range(4) for p in "Wb"]
    assert model.num_parameters == 784 * 500 + 500 + 500 * 250 + 250 + 250 * 100 + 100 + 100 * 10 + 10
    text = model.summary()
    assert "543,860" in text and "Dense(relu)" in text
    model.set_parameter("dense3.b", np.arange(10.0))
    np.testing.assert_array_equal(model.get_parameter("dense3.b"), np.arange(10.0, dtype=np.float32))
    assert model.flat_params[-10:].tolist() == list(range(10))  # views into the flat buffer
    with pytest.raises(ValueError, match=r"has shape \(10,\), got \(3,\)"):
        model.set_parameter("dense3.b", [1, 2, 3])
    with pytest.raises(KeyError, match="no parameter 'dense9.W'"):
        model.get_parameter("dense9.W")
    other = mlp.build_mlp([784, 500, 250, 100, 10], "relu", seed=99)
    other.load_parameters(model.state_dict())
    np.testing.assert_array_equal(other.flat_params, model.flat_params)
    with pytest.raises(KeyError, match="missing"):
        other.load_parameters({"dense0.W": model.state_dict()["dense0.W"]})


def test_bad_layer_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        mlp.Dense(3, 2, activation="swish")
    with pytest.raises(ValueError, match="in_features must be a positive integer"):
        mlp.Dense(0, 2)
    with pytest.raises(ValueError, match="Dropout rate"):
        mlp.Dropout(1.0)
    with pytest.raises(ValueError, match="unknown initializer 'xavier'"):
        mlp.Dense(3, 2, init="xavier")
    with pytest.raises(ValueError, match="expects 5 input features, the previous layer gives 4"):
        mlp.Sequential([mlp.Dense(3, 4), mlp.Dense(5, 2)])


@pytest.mark.parametrize("init,expected_std", [("glorot_uniform", np.sqrt(2 / 600)), ("glorot_normal", np.sqrt(2 / 600)),
                                               ("he_uniform", np.sqrt(2 / 400)), ("he_normal", np.sqrt(2 / 400)),
                                               ("lecun_normal", np.sqrt(1 / 400)), ("uniform:0.1", 0.1 / np.sqrt(3)),
                                               ("normal:0.02", 0.02)])
def test_initializers_have_the_documented_scale(init, expected_std):
    model = mlp.Sequential([mlp.Dense(400, 200, init=init)], dtype="float64")
    W = model.get_parameter("dense0.W")
    assert abs(W.std() / expected_std - 1) < 0.03
    assert np.all(model.get_parameter("dense0.b") == 0)


@pytest.mark.parametrize("target", backends(["array_api_strict", "torch"]))
def test_model_moves_between_backends_and_keeps_training(target):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)), rng.integers(0, 3, 64)
    a = mlp.build_mlp([4, 8, 3], dtype="float64", seed=3)
    b = mlp.build_mlp([4, 8, 3], dtype="float64", seed=3)
    a.fit(X, y, epochs=1, batch_size=16, optimizer=mlp.Adam(1e-2))
    b.fit(X, y, epochs=1, batch_size=16, optimizer=mlp.Adam(1e-2))
    b.to(target, device=BACKEND_DEVICES[target])
    assert b.be.name == target
    a.fit(X, y, epochs=2, batch_size=16)
    b.fit(X, y, epochs=2, batch_size=16)
    b.to("numpy")
    np.testing.assert_allclose(b.flat_params, a.flat_params, rtol=1e-9, atol=1e-12)


def test_activations_known_values_at_linspace():
    """The coursework's check: every activation at linspace(-5, 5, 10), fused and reference, against closed forms."""
    import array_api_compat.numpy as xp

    from mlp_backend.kernels import kernel_set

    z = np.linspace(-5, 5, 10)
    a = 0.3
    sig = 1 / (1 + np.exp(-z))
    scale, alpha = 1.0507009873554805, 1.6732632423543772
    expected = {
        "identity": z, "relu": np.maximum(z, 0), "leaky_relu": np.where(z > 0, z, a * z), "sigmoid": sig,
        "tanh": np.tanh(z), "elu": np.where(z > 0, z, a * (np.exp(z) - 1)),
        "selu": scale * np.where(z > 0, z, alpha * (np.exp(z) - 1)),
        "gelu": 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3))),
    }
    assert set(expected) == set(TABLE)
    np.testing.assert_allclose(expected["sigmoid"][0], 0.0066928509242848554, rtol=1e-15)  # sigmoid(-5)
    for mode in ("numba", "reference"):
        ops = kernel_set("numpy", mode)
        for name, want in expected.items():
            got = ops.bias_act(xp, z.copy(), None, name, a)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=f"{name} {mode}")
