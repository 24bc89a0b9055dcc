# %% [markdown]
# # Coming from scikit-learn
#
# `mlp_backend.estimators.MLPClassifier` and `MLPRegressor` are scikit-learn's estimators parameter for
# parameter: the same names, defaults, fitted attributes, error messages and behaviours (they pass
# `check_estimator`). Change the import and a scikit-learn script runs; add `backend=` and it trains on
# another array library.

# %%
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, learning_curve, train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlp_backend.estimators import MLPClassifier

warnings.filterwarnings("ignore", category=ConvergenceWarning)  # short max_iter on purpose, to build fast
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)

# %% [markdown]
# ## The same script, the same results
#
# One pipeline, fitted with scikit-learn's estimator and then with ours. The weights are drawn from the
# same distributions but not the same random numbers, so the scores agree within seed noise, not bit for
# bit.

# %%
for estimator in (SklearnMLPClassifier, MLPClassifier):
    pipe = make_pipeline(StandardScaler(), estimator(hidden_layer_sizes=(64,), max_iter=100, random_state=0))
    pipe.fit(X_train, y_train)
    clf = pipe[-1]
    print(f"{estimator.__module__:32s} test accuracy {pipe.score(X_test, y_test):.4f}, "
          f"{clf.n_iter_} iterations, final loss {clf.loss_curve_[-1]:.4f}, "
          f"weights {[w.shape for w in clf.coefs_]}")

# %% [markdown]
# ## Grid search
#
# `GridSearchCV` clones the estimator, sets parameters by name and scores it; everything it relies on
# (`get_params`, `set_params`, `clone`, `score`, `classes_`) behaves as scikit-learn's.

# %%
pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=60, random_state=0))
grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(32,), (128,)],
                           "mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3)
grid.fit(X_train, y_train)
for params, mean, std in zip(grid.cv_results_["params"], grid.cv_results_["mean_test_score"],
                             grid.cv_results_["std_test_score"]):
    print(f"{params}: {mean:.4f} ± {std:.4f}")
print("best:", grid.best_params_, "test accuracy", round(grid.score(X_test, y_test), 4))

# %% [markdown]
# ## Learning curves
#
# How the score grows with the training set size, from scikit-learn's `learning_curve`:

# %%
import matplotlib.pyplot as plt

sizes, train_scores, val_scores = learning_curve(
    make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=60, random_state=0)),
    X_train, y_train, train_sizes=np.linspace(0.1, 1.0, 5), cv=3)
fig, ax = plt.subplots(figsize=(6, 4))
for scores, label in ((train_scores, "training"), (val_scores, "cross-validation")):
    ax.plot(sizes, scores.mean(axis=1), "o-", label=label)
    ax.fill_between(sizes, scores.mean(axis=1) - scores.std(axis=1), scores.mean(axis=1) + scores.std(axis=1),
                    alpha=0.2)
ax.set_xlabel("training samples")
ax.set_ylabel("accuracy")
ax.legend()
plt.show()

# %% [markdown]
# ## Another backend by one argument
#
# The estimators take a few keyword-only extras: `backend` (`"numpy"`, `"torch"`, `"array_api_strict"`,
# `"cupy"`), `device`, `dtype`, `kernels` and `dropout`. Inputs and outputs stay NumPy arrays; the
# training happens on the backend. On a CUDA machine with the `cuda12` or `cuda13` extra installed,
# `backend="cupy"` trains on the GPU; this page was built on a CPU, so it trains with torch's CPU tensors:

# %%
from mlp_backend.backend import available_backends

backend = "cupy" if "cupy" in available_backends() else "torch"
clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=100, random_state=0, backend=backend)
pipe = make_pipeline(StandardScaler(), clf).fit(X_train, y_train)
print(backend, "test accuracy:", round(pipe.score(X_test, y_test), 4))
print("predict_proba rows sum to one:", np.allclose(pipe.predict_proba(X_test[:5]).sum(axis=1), 1.0))

# %% [markdown]
# ## The solvers
#
# `solver="adam"` (default), `"sgd"` (momentum, Nesterov, constant / invscaling / adaptive learning
# rates) and `"lbfgs"` (SciPy's L-BFGS-B on the flat parameter vector), with `early_stopping`,
# `warm_start`, `partial_fit` and `sample_weight` as in scikit-learn:

# %%
for solver in ("adam", "sgd", "lbfgs"):
    clf = make_pipeline(StandardScaler(), MLPClassifier(solver=solver, max_iter=200, random_state=0,
                                                        early_stopping=solver != "lbfgs"))
    clf.fit(X_train, y_train)
    print(f"{solver:5s} test accuracy {clf.score(X_test, y_test):.4f} after {clf[-1].n_iter_} iterations")

online = MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
scaled = StandardScaler().fit(X_train)
for epoch in range(20):  # data arriving in 10 pieces, seen 20 times
    for chunk in np.array_split(np.arange(len(y_train)), 10):
        online.partial_fit(scaled.transform(X_train[chunk]), y_train[chunk], classes=np.arange(10))
print("partial_fit, 200 calls:", round(online.score(scaled.transform(X_test), y_test), 4), "test accuracy")
