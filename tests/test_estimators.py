import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from mlp_backend.estimators import MLPClassifier, MLPRegressor

from conftest import AVAILABLE

# check_estimator trains dozens of models: small and short, but still learning.
FAST = dict(hidden_layer_sizes=(16,), max_iter=60, batch_size=32, learning_rate_init=1e-2, random_state=0)

# Checks we fail on purpose, with the reason (check_estimator's expected_failed_checks).
WEIGHTS_VS_REPEATS = ("stochastic solvers: repeating a sample changes the mini-batches; scikit-learn runs this check "
                      "on its own MLP with solver='lbfgs' only, as test_lbfgs_sample_weights_equal_repeated_samples "
                      "does here")
EXPECTED_FAILURES = {"check_sample_weight_equivalence_on_dense_data": WEIGHTS_VS_REPEATS,
                     "check_sample_weight_equivalence_on_sparse_data": WEIGHTS_VS_REPEATS}


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
    reg = MLPRegressor(**FAST).fit(X, y / 100)  # scikit-learn's MLP does not rescale targets; neither do we
    assert reg.score(X, y / 100) > 0.95
    assert reg.get_params()["hidden_layer_sizes"] == (16,)
    reg.set_params(max_iter=5)
    assert reg.max_iter == 5


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch not installed")
def test_backend_parameter_trains_on_torch():
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(backend="torch", **FAST).fit(StandardScaler().fit_transform(X), y)
    assert clf.model_.be.name == "torch"
    assert clf.score(StandardScaler().fit_transform(X), y) > 0.9


def test_classifier_errors_name_the_problem():
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier(**FAST).fit(np.zeros((5, 2)), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="'activation' parameter of MLPClassifier must be a str among"):
        MLPClassifier(activation="swish", **{k: v for k, v in FAST.items()}).fit(np.eye(4), [0, 1, 0, 1])


def test_estimators_compute_in_the_inputs_dtype_unless_told():
    X, y = load_iris(return_X_y=True)
    kw = dict(FAST, max_iter=2)
    assert MLPClassifier(**kw).fit(X, y).model_.be.dtype == "float64"
    assert MLPClassifier(**kw).fit(X.astype(np.float32), y).model_.be.dtype == "float32"
    assert MLPClassifier(**kw, dtype="float32").fit(X, y).model_.be.dtype == "float32"


# -- a drop-in for scikit-learn's MLP ------------------------------------------------------------------
EXTRAS = {"backend", "device", "dtype", "kernels", "dropout"}


@pytest.mark.parametrize("ours,theirs", [("MLPClassifier", "MLPClassifier"), ("MLPRegressor", "MLPRegressor")])
def test_parameters_and_fitted_attributes_are_scikit_learns(ours, theirs):
    import warnings

    import sklearn.neural_network as sk
    from sklearn.datasets import load_digits

    import mlp_backend.estimators as est

    mine, reference = getattr(est, ours)(), getattr(sk, theirs)()
    assert set(mine.get_params()) == set(reference.get_params()) | EXTRAS
    common = set(reference.get_params())
    assert {k: v for k, v in mine.get_params().items() if k in common} == reference.get_params()  # same defaults
    X, y = load_digits(return_X_y=True)
    X = X / 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = getattr(est, ours)(max_iter=3, random_state=0).fit(X, y)
        b = getattr(sk, theirs)(max_iter=3, random_state=0).fit(X, y)
    fitted = {k for k in dir(b) if k.endswith("_") and not k.startswith("_") and hasattr(b, k)}
    assert fitted <= {k for k in dir(a) if hasattr(a, k)}, fitted - set(dir(a))
    for name in ("n_layers_", "n_outputs_", "out_activation_", "n_iter_", "t_"):
        assert getattr(a, name) == getattr(b, name), name
    assert [c.shape for c in a.coefs_] == [c.shape for c in b.coefs_]
    assert [c.shape for c in a.intercepts_] == [c.shape for c in b.intercepts_]


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_digits_accuracy_is_within_noise_of_scikit_learns(solver):
    import warnings

    import sklearn.neural_network as sk
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xa, Xb, ya, yb = train_test_split(X / 16, y, random_state=0)
    settings = dict(hidden_layer_sizes=(64,), solver=solver, max_iter=60, learning_rate_init=0.05 if solver == "sgd"
                    else 1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = [MLPClassifier(**settings, random_state=s).fit(Xa, ya).score(Xb, yb) for s in (0, 1)]
        theirs = [sk.MLPClassifier(**settings, random_state=s).fit(Xa, ya).score(Xb, yb) for s in (0, 1)]
    assert abs(np.mean(ours) - np.mean(theirs)) < 0.03, (ours, theirs)


def test_scikit_learns_stochastic_strategies_example_runs_unchanged():
    """The documented 'compare stochastic learning strategies' example, on iris and digits."""
    import warnings

    from sklearn.datasets import load_digits

    params = [{"solver": "sgd", "learning_rate": "constant", "momentum": 0, "learning_rate_init": 0.2},
              {"solver": "sgd", "learning_rate": "constant", "momentum": 0.9, "nesterovs_momentum": False,
               "learning_rate_init": 0.2},
              {"solver": "sgd", "learning_rate": "constant", "momentum": 0.9, "nesterovs_momentum": True,
               "learning_rate_init": 0.2},
              {"solver": "sgd", "learning_rate": "invscaling", "momentum": 0, "learning_rate_init": 0.2},
              {"solver": "sgd", "learning_rate": "invscaling", "momentum": 0.9, "nesterovs_momentum": True,
               "learning_rate_init": 0.2},
              {"solver": "sgd", "learning_rate": "adaptive", "momentum": 0.9, "nesterovs_momentum": True,
               "learning_rate_init": 0.2},
              {"solver": "adam", "learning_rate_init": 0.01}]
    import sklearn.neural_network as sk

    for (X, y), seeds in ((load_iris(return_X_y=True), (0, 1, 2)), (load_digits(return_X_y=True), (0,))):
        X = StandardScaler().fit_transform(X)  # iris is small and seed-sensitive: the mean of three seeds
        for param in params:
            ours, theirs = [], []
            for seed in seeds:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    mlp = MLPClassifier(random_state=seed, max_iter=40, **param).fit(X, y)
                    ours.append(mlp.score(X, y))
                    theirs.append(sk.MLPClassifier(random_state=seed, max_iter=40, **param).fit(X, y).score(X, y))
                assert len(mlp.loss_curve_) == mlp.n_iter_ and mlp.loss_curve_[-1] < mlp.loss_curve_[0]
            assert abs(np.mean(ours) - np.mean(theirs)) < 0.15, (param, ours, theirs)


def test_stopping_rules_warnings_and_validation_scores():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\) reached"):
        MLPClassifier(max_iter=3, random_state=0).fit(X, y)
    clf = MLPClassifier(max_iter=500, tol=1e-2, n_iter_no_change=3, random_state=0).fit(X, y)
    assert clf.n_iter_ < 500 and clf.best_loss_ == min(clf.loss_curve_) and clf.validation_scores_ is None
    early = MLPClassifier(max_iter=500, early_stopping=True, n_iter_no_change=5, random_state=0).fit(X, y)
    assert early.best_loss_ is None and len(early.validation_scores_) == early.n_iter_
    assert early.best_validation_score_ == max(early.validation_scores_)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier(solver="lbfgs", max_iter=2, random_state=0).fit(X, y)


def test_partial_fit_warm_start_multilabel_binary_and_settable_coefs():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X[:10], y[:10])
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    for _ in range(30):
        clf.partial_fit(X[y != 2], y[y != 2], classes=[0, 1, 2]) if not hasattr(clf, "model_") else \
            clf.partial_fit(X, y)
    # as scikit-learn: n_iter_ counts the last call's passes, t_ every sample seen
    assert clf.n_iter_ == 1 and clf.t_ == 100 + 29 * 150 and clf.score(X, y) > 0.8 and list(clf.classes_) == [0, 1, 2]
    warm = MLPClassifier(max_iter=5, warm_start=True, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
        first = [c.copy() for c in warm.coefs_]
        warm.fit(X, y)
    assert warm.n_iter_ == 5 and warm.t_ == 1500 and not np.array_equal(first[0], warm.coefs_[0])  # per fit, as sklearn
    binary = MLPClassifier(max_iter=200, random_state=0).fit(X, np.where(y == 0, "setosa", "other"))
    assert binary.n_outputs_ == 1 and binary.out_activation_ == "logistic"
    assert binary.predict_proba(X).shape == (150, 2) and binary.score(X, np.where(y == 0, "setosa", "other")) > 0.95
    labels = np.column_stack([y == 0, y == 2, X[:, 0] > 0]).astype(int)  # multilabel indicator targets
    multi = MLPClassifier(max_iter=300, random_state=0).fit(X, labels)
    assert multi.out_activation_ == "logistic" and multi.predict(X).shape == (150, 3)
    assert multi.score(X, labels) > 0.8
    zeroed = [np.zeros_like(c) for c in clf.coefs_]
    clf.coefs_, clf.intercepts_ = zeroed, [np.zeros_like(b) for b in clf.intercepts_]
    np.testing.assert_allclose(clf.predict_proba(X), 1 / 3)  # setting them changes the model, as people expect


def test_scikit_learns_varying_alpha_and_coefs_examples_run_unchanged():
    """plot_mlp_alpha (make_moons / circles / linearly separable, lbfgs, DecisionBoundaryDisplay) and the
    coefs_ visualisation, with only the import changed."""
    from sklearn.datasets import make_circles, make_classification, make_moons
    from sklearn.inspection import DecisionBoundaryDisplay
    from sklearn.model_selection import train_test_split

    X, y = make_classification(n_features=2, n_redundant=0, n_informative=2, random_state=0, n_clusters_per_class=1)
    X += 2 * np.random.RandomState(2).uniform(size=X.shape)
    for X, y in (make_moons(noise=0.3, random_state=0), make_circles(noise=0.2, factor=0.5, random_state=1), (X, y)):
        X = StandardScaler().fit_transform(X)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=42)
        scores = []
        for alpha in np.logspace(-1, 1, 3):
            clf = make_pipeline(StandardScaler(), MLPClassifier(solver="lbfgs", alpha=alpha, random_state=1,
                                                                max_iter=2000, early_stopping=True,
                                                                hidden_layer_sizes=[10, 10]))
            clf.fit(X_train, y_train)
            scores.append(clf.score(X_test, y_test))
            DecisionBoundaryDisplay.from_estimator(clf, X, response_method="predict_proba", eps=0.5)
        assert max(scores) > 0.8, scores
    clf = MLPClassifier(hidden_layer_sizes=(40,), max_iter=8, alpha=1e-4, solver="sgd", random_state=1,
                        learning_rate_init=0.2)
    digits_X = np.random.RandomState(0).rand(200, 64)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(digits_X, np.arange(200) % 10)
    vmin, vmax = clf.coefs_[0].min(), clf.coefs_[0].max()
    images = [coef.reshape(8, 8) for coef in clf.coefs_[0].T]  # the example's 28x28 images, on 8x8 inputs
    assert len(images) == 40 and vmin < vmax


@pytest.mark.parametrize("estimator", [MLPClassifier(solver="lbfgs", hidden_layer_sizes=(8,), random_state=0),
                                       MLPRegressor(solver="lbfgs", hidden_layer_sizes=(8,), random_state=0)],
                         ids=["classifier", "regressor"])
def test_lbfgs_sample_weights_equal_repeated_samples(estimator):
    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data

    check_sample_weight_equivalence_on_dense_data(type(estimator).__name__, estimator)


def test_fit_signatures_are_scikit_learns():
    import inspect

    import sklearn.neural_network as sk

    for name in ("MLPClassifier", "MLPRegressor"):
        for method in ("fit", "partial_fit"):
            ours = list(inspect.signature(getattr(globals()[name], method)).parameters)
            assert ours == list(inspect.signature(getattr(getattr(sk, name), method)).parameters), (name, method)


def test_poisson_regression_as_scikit_learns():
    import warnings

    import sklearn.neural_network as sk

    rng = np.random.RandomState(0)
    X = rng.normal(size=(400, 4))
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))
    settings = dict(loss="poisson", hidden_layer_sizes=(16,), learning_rate_init=1e-2, max_iter=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPRegressor(**settings).fit(X, y), sk.MLPRegressor(**settings).fit(X, y)
    assert ours.out_activation_ == theirs.out_activation_ == "exp" and np.all(ours.predict(X) > 0)
    assert abs(ours.score(X, y) - theirs.score(X, y)) < 0.1 and abs(ours.loss_ - theirs.loss_) < 0.1 * theirs.loss_
    with pytest.raises(ValueError, match="non-negative targets"):
        MLPRegressor(loss="poisson").fit(X, -np.ones(400))


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
def test_the_cupy_backend_matches_numpy_within_float32_noise():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    settings = dict(hidden_layer_sizes=(64,), max_iter=30, random_state=0, shuffle=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gpu = MLPClassifier(backend="cupy", **settings).fit(X, y)
        cpu = MLPClassifier(backend="numpy", **settings).fit(X, y)
    assert isinstance(gpu.predict(X), np.ndarray)  # host arrays out
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-3)
    assert abs(gpu.score(X, y) - cpu.score(X, y)) < 0.01
