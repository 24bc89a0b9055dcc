"""Property tests (hypothesis, derandomised): invariances every model must have."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import mlp_backend as mlp

ACTIVATIONS = st.sampled_from(["relu", "tanh", "sigmoid", "elu", "leaky_relu", "selu"])


def fitted(activation, seed, batch_norm=False):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    model = mlp.build_mlp([5, 7, 3], activation, batch_norm=batch_norm, dropout=0.1, seed=seed)
    model.fit(X, y, epochs=2, batch_size=8)
    return model, rng.normal(size=(23, 5))


@given(activation=ACTIVATIONS, seed=st.integers(0, 1000), batch=st.integers(1, 30), bn=st.booleans())
def test_predictions_do_not_depend_on_batch_size(activation, seed, batch, bn):
    model, X = fitted(activation, seed, bn)
    np.testing.assert_allclose(model.predict_proba(X, batch_size=batch), model.predict_proba(X, batch_size=1024),
                               rtol=1e-5, atol=1e-6)


@given(activation=ACTIVATIONS, seed=st.integers(0, 1000), perm_seed=st.integers(0, 1000))
def test_permuting_samples_permutes_predictions(activation, seed, perm_seed):
    model, X = fitted(activation, seed)
    perm = np.random.default_rng(perm_seed).permutation(len(X))
    np.testing.assert_allclose(model.predict_proba(X[perm]), model.predict_proba(X)[perm], rtol=1e-5, atol=1e-6)


@given(activation=ACTIVATIONS, seed=st.integers(0, 1000), bn=st.booleans())
def test_save_load_round_trip_is_exact(tmp_path_factory, activation, seed, bn):
    model, X = fitted(activation, seed, bn)
    path = tmp_path_factory.mktemp("ck") / "m.safetensors"
    mlp.save_checkpoint(model, path, optimizer=model.optimizer)
    loaded = mlp.load_checkpoint(path).model
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@given(activation=ACTIVATIONS, seed=st.integers(0, 1000))
def test_refitting_with_the_same_seed_is_idempotent(activation, seed):
    a, X = fitted(activation, seed)
    b, _ = fitted(activation, seed)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
