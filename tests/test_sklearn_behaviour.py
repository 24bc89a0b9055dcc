"""The estimators behave as scikit-learn's own MLPs on the same inputs: the values they accept, sparse and
float32 inputs, divergence, errors, warnings, iteration counts, multilabel and single-class targets, pandas."""
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.neural_network as sk
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import scale

import mlp_backend.estimators as ours

X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)
X, Y = X_DIGITS[:240] / 16.0, Y_DIGITS[:240]
SMALL = dict(hidden_layer_sizes=(8,), random_state=0)


def outcome(fit):
    """What a call does: ('ok', value) or ('raise', type, message), and the warnings' categories."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = ("ok", fit())
        except Exception as e:  # noqa: BLE001 -- compared below, type and message
            result = ("raise", type(e), str(e))
    return result, sorted({w.category.__name__ for w in caught if w.category is not RuntimeWarning})


def _sets_sorted(message: str) -> str:
    """A message with the members of each ``{...}`` sorted: a set's order changes from process to process."""
    return re.sub(r"\{([^{}]*)\}", lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", message)


def same(call, name="MLPClassifier", message_up_to=None, check_warnings=True):
    """``call(Estimator)`` on scikit-learn's and on ours: the outcomes, which must agree in kind; an error in
    type and message (word for word, or up to ``message_up_to``), and the warnings' categories."""
    theirs, mine = outcome(lambda: call(getattr(sk, name))), outcome(lambda: call(getattr(ours, name)))
    assert theirs[0][0] == mine[0][0], (theirs, mine)
    if theirs[0][0] == "raise":
        cut = (lambda m: m) if message_up_to is None else (lambda m: m[:m.index(message_up_to)])
        assert theirs[0][1] == mine[0][1] and _sets_sorted(cut(theirs[0][2])) == _sets_sorted(cut(mine[0][2])), \
            (theirs, mine)
    if check_warnings:
        assert theirs[1] == mine[1], (theirs, mine)
    return theirs[0], mine[0]


@pytest.mark.parametrize("params", [dict(alpha=np.int64(0)), dict(alpha=np.float32(1e-3)),
                                    dict(n_iter_no_change=np.inf), dict(batch_size=np.int64(50)),
                                    dict(learning_rate_init=np.float64(0.01), max_iter=np.int32(3))])
def test_parameter_values_scikit_learn_accepts(params):
    theirs, mine = same(lambda C: C(**SMALL, **{"max_iter": 3, **params}).fit(X, Y).n_iter_)
    assert theirs == mine == ("ok", 3)


@pytest.mark.parametrize("params", [dict(alpha=-1.0), dict(learning_rate_init=0.0), dict(n_iter_no_change=0),
                                    dict(solver="newton"), dict(activation="swish"), dict(batch_size="all"),
                                    dict(momentum=1.5), dict(validation_fraction=1.0), dict(max_iter=2.5)])
def test_bad_parameter_values_get_scikit_learns_error(params):
    # same type and message, word for word but for the activations (ours has more)
    same(lambda C: C(**SMALL, **params).fit(X, Y), message_up_to="among" if "activation" in params else None)


def test_regressor_loss_is_checked_as_scikit_learns():
    same(lambda C: C(loss="huber", **SMALL).fit(X, Y), "MLPRegressor")


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_sparse_input_is_accepted_and_equals_dense(fmt, name):
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    theirs, mine = same(lambda C: C(**SMALL, max_iter=5).fit(Xs, Y).predict(Xs[:20]), name)
    dense = getattr(ours, name)(**SMALL, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        np.testing.assert_array_equal(mine[1], dense.fit(X, Y).predict(X[:20]))


def test_float32_inputs_stay_float32():
    X32, y32 = X.astype(np.float32), Y.astype(np.float32)
    for name, target, method in (("MLPClassifier", Y, "predict_proba"), ("MLPRegressor", y32, "predict")):
        for C in (getattr(sk, name), getattr(ours, name)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est = C(**SMALL, max_iter=3).fit(X32, target)
            assert est.coefs_[0].dtype == np.float32, C
            assert getattr(est, method)(X32).dtype == np.float32, C


def test_divergence_raises_scikit_learns_error_or_with_early_stopping_scores_nan():
    huge = X * 1e300
    # scikit-learn runs its max_iter epochs on NaN weights (a ConvergenceWarning); ours stops at the first NaN
    theirs, mine = same(lambda C: C(**SMALL, max_iter=3).fit(huge, Y), "MLPRegressor", check_warnings=False)
    assert "Solver produced non-finite parameter weights" in mine[2]
    theirs, mine = same(lambda C: C(**SMALL, max_iter=5, early_stopping=True).fit(huge, Y), "MLPRegressor",
                        check_warnings=False)
    assert theirs[0] == mine[0] == "ok"  # finishes, keeping the best (finite) weights
    fitted = ours.MLPRegressor(**SMALL, max_iter=5, early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted.fit(huge, Y)
    assert np.isnan(fitted.validation_scores_[-1]) and all(np.isfinite(c).all() for c in fitted.coefs_)


def test_classes_errors_as_scikit_learns():
    same(lambda C: C(**SMALL).partial_fit(X, Y, classes=[0, 1, 2]))  # classes that do not hold y's labels
    other = np.where(Y == 9, 10, Y)

    def warm_refit_on_other_classes(C):
        est = C(**SMALL, max_iter=2, warm_start=True).fit(X, Y)
        return est.fit(X, other)
    same(warm_refit_on_other_classes)

    def changed_classes(C):
        est = C(**SMALL).partial_fit(X, Y, classes=np.arange(10))
        return est.partial_fit(X, Y, classes=np.arange(11))
    same(changed_classes)


def test_early_stopping_split_errors_as_scikit_learns():
    binary = (Y > 4).astype(int)
    binary[0] = 2  # three classes, one of one member: multiclass targets are not stratified, as scikit-learn's
    same(lambda C: C(**SMALL, max_iter=2, early_stopping=True).fit(X, binary).n_iter_)
    lonely = np.zeros(60, dtype=int)
    lonely[0] = 1  # two classes, one of one member: the stratified split refuses it
    theirs, mine = same(lambda C: C(**SMALL, max_iter=2, early_stopping=True).fit(X[:60], lonely))
    assert "least populated class" in mine[2]
    theirs, mine = same(lambda C: C(**SMALL, max_iter=2, early_stopping=True, validation_fraction=0.05)
                        .fit(X[:20], Y[:20] % 3))
    assert mine[2].startswith("The validation set is too small")


def test_convergence_warnings_as_scikit_learns():
    same(lambda C: C(**SMALL, solver="lbfgs", max_fun=5, max_iter=100).fit(X, Y))

    def warm_refit(C):
        est = C(**SMALL, max_iter=3, warm_start=True).fit(X, Y)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(X, Y)
        return [w.category for w in caught]
    theirs, mine = same(warm_refit)
    assert theirs[1] == mine[1] == [ConvergenceWarning]


def test_iteration_counts_as_scikit_learns():
    def warm(C):
        est = C(**SMALL, max_iter=3, warm_start=True).fit(X, Y)
        est.fit(X, Y)
        return est.n_iter_, est.t_, len(est.loss_curve_)
    theirs, mine = same(warm)
    assert theirs == mine == ("ok", (3, 2 * 3 * len(X), 6))

    def partial_after_fit(C):
        est = C(**SMALL, max_iter=2).fit(X, Y)
        est.partial_fit(X, Y)
        return est.n_iter_, est.t_
    theirs, mine = same(partial_after_fit)
    assert theirs == mine == ("ok", (1, 3 * len(X)))
    same(lambda C: C(**SMALL, max_iter=2, early_stopping=True).fit(X, Y).partial_fit(X, Y))
    for name in ("MLPClassifier", "MLPRegressor"):
        assert not hasattr(getattr(ours, name)(solver="lbfgs"), "partial_fit")
        assert hasattr(getattr(ours, name)(solver="sgd"), "partial_fit")


def test_multilabel_partial_fit_and_early_stopping_as_scikit_learns():
    labels = np.stack([Y % 2, Y % 3 == 0, Y > 4, Y == 1, Y == 2], axis=1).astype(int)

    def partial(C):
        est = C(**SMALL).partial_fit(X, labels, classes=[0, 1, 2, 3, 4])
        return list(est.classes_), est.predict(X).shape, 0 <= est.score(X, labels) <= 1
    theirs, mine = same(partial)
    assert theirs == mine
    unique_row = labels.copy()
    unique_row[0] = [1, 1, 1, 1, 1]  # a label combination of one member: a stratified split would refuse it
    theirs, mine = same(lambda C: C(**SMALL, max_iter=2, early_stopping=True).fit(X, unique_row).n_iter_)
    assert theirs == mine == ("ok", 2)


def test_partial_fit_regression_as_scikit_learns_own_test():
    """scikit-learn's test_partial_fit_regression: 100 full-batch partial_fit passes equal fit, R^2 > 0.65."""
    Xr, yr = make_regression(n_samples=200, n_features=10, bias=20.0, noise=100.0, random_state=7)
    yr = scale(yr)
    for momentum in (0, 0.9):
        settings = dict(solver="sgd", activation="relu", random_state=1, learning_rate_init=0.01,
                        batch_size=Xr.shape[0], momentum=momentum)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted = ours.MLPRegressor(max_iter=100, **settings).fit(Xr, yr)
        stepped = ours.MLPRegressor(**settings)
        for _ in range(100):
            stepped.partial_fit(Xr, yr)
        np.testing.assert_allclose(stepped.predict(Xr), fitted.predict(Xr))
        assert stepped.score(Xr, yr) > 0.65


def test_a_single_class_is_accepted_as_by_scikit_learn():
    def single(C):
        est = C(**SMALL, max_iter=3).fit(X, np.full(len(X), 7))
        return list(est.classes_), list(est.predict(X[:4])), est.predict_proba(X[:4]).shape
    theirs, mine = same(single)
    assert theirs == mine == ("ok", ([7], [7, 7, 7, 7], (4, 2)))


def test_pandas_feature_names_survive_the_early_stopping_split():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(X.shape[1])])

    def with_names(C):
        est = C(**SMALL, max_iter=3, early_stopping=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(frame, Y)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "X does not have valid feature names" would fail here
            est.predict(frame)
            est.score(frame, Y)
        return list(est.feature_names_in_)
    theirs, mine = same(with_names)
    assert theirs == mine
