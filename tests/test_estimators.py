import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from mlp_backend.estimators import MLPClassifier, MLPRegressor

from conftest import AVAILABLE

# check_estimator trains dozens of models: small and short, but still learning.
FAST = dict(hidden_layer_sizes=(16,), epochs=60, batch_size=32, learning_rate=1e-2, random_state=0)

# Checks we fail on purpose, with the reason (check_estimator's expected_failed_checks).
EXPECTED_FAILURES = {}


@pytest.mark.parametrize("estimator", [MLPClassifier(**FAST), MLPRegressor(**FAST)], ids=["classifier", "regressor"])
def test_scikit_learn_check_estimator(estimator):
    check_estimator(estimator, expected_failed_checks=EXPECTED_FAILURES)


def test_classifier_in_a_pipeline_and_grid_search():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    pipe = make_pipeline(StandardScaler(), MLPClassifier(**FAST))
    search = GridSearchCV(pipe, {"mlpclassifier__activation": ["relu", "tanh"]}, cv=3)
    search.fit(X, names)
    assert search.best_score_ > 0.9
    assert set(search.predict(X)) <= set(names)
    proba = search.predict_proba(X)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(axis=1), 1.0)


def test_regressor_learns_and_params_round_trip():
    X, y = make_regression(n_samples=300, n_features=5, noise=1.0, random_state=0)
    reg = MLPRegressor(**FAST).fit(X, y * 100 + 1000)  # far from zero: internal target scaling
    assert reg.score(X, y * 100 + 1000) > 0.95
    assert reg.get_params()["hidden_layer_sizes"] == (16,)
    reg.set_params(epochs=5)
    assert reg.epochs == 5


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch not installed")
def test_backend_parameter_trains_on_torch():
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(backend="torch", **FAST).fit(StandardScaler().fit_transform(X), y)
    assert clf.model_.be.name == "torch"
    assert clf.score(StandardScaler().fit_transform(X), y) > 0.9


def test_classifier_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier(**FAST).fit(np.zeros((5, 2)), np.ones(5))
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier(**FAST).fit(np.zeros((5, 2)), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="unknown activation"):
        MLPClassifier(activation="swish", **{k: v for k, v in FAST.items()}).fit(np.eye(4), [0, 1, 0, 1])


def test_estimators_compute_in_the_inputs_dtype_unless_told():
    X, y = load_iris(return_X_y=True)
    kw = dict(FAST, epochs=2)
    assert MLPClassifier(**kw).fit(X, y).model_.be.dtype == "float64"
    assert MLPClassifier(**kw).fit(X.astype(np.float32), y).model_.be.dtype == "float32"
    assert MLPClassifier(**kw, dtype="float32").fit(X, y).model_.be.dtype == "float32"
