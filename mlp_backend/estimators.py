"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` over mlp-backend models.

They follow scikit-learn's conventions (constructor parameters stored as given, ``fit`` returns self,
fitted attributes end in ``_``, input checked by ``validate_data``) so they work in pipelines, grid
search and ``check_estimator``. ``backend=`` picks the array library the model trains on.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .layers import build_mlp
from .optim import get_optimizer
from .train import EarlyStopping


class _BaseMLP(BaseEstimator):
    def __init__(self, hidden_layer_sizes=(100,), activation="relu", optimizer="adam", learning_rate=1e-3,
                 batch_size=64, epochs=200, alpha=0.0, dropout=0.0, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, backend="numpy", dtype=None, kernels=None,
                 random_state=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.alpha = alpha
        self.dropout = dropout
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype
        self.kernels = kernels
        self.random_state = random_state

    def _seed(self) -> int:
        rs = self.random_state
        if rs is None or isinstance(rs, np.random.RandomState):
            return int(np.random.RandomState(rs).randint(2**31 - 1)) if rs is not None else int(
                np.random.randint(2**31 - 1))
        return int(rs)

    def _train(self, X, targets, outputs, loss):
        hidden = [self.hidden_layer_sizes] if np.isscalar(self.hidden_layer_sizes) else list(self.hidden_layer_sizes)
        seed = self._seed()
        # dtype None: X's (float32 or float64), as scikit-learn's own MLP does. A float32 model's predictions
        # move in the last bits with the batch they are computed in (BLAS blocks differently), which
        # scikit-learn's subset-invariance check (atol 1e-7) rejects for float64 input.
        self.model_ = build_mlp([X.shape[1], *hidden, outputs], self.activation, dropout=self.dropout,
                                backend=self.backend, dtype=self.dtype or X.dtype.name, seed=seed,
                                kernels=self.kernels)
        validation, callbacks = None, []
        if self.early_stopping:
            rng = np.random.default_rng(seed)
            held = rng.permutation(X.shape[0])[:max(1, int(round(self.validation_fraction * X.shape[0])))]
            keep = np.setdiff1d(np.arange(X.shape[0]), held)
            X, validation = X[keep], (X[held], targets[held])
            targets = targets[keep]
            callbacks.append(EarlyStopping("val_loss", patience=self.n_iter_no_change))
        self.history_ = self.model_.fit(
            X, targets, loss=loss, optimizer=get_optimizer(self.optimizer, lr=self.learning_rate),
            epochs=self.epochs, batch_size=self.batch_size, seed=seed, penalty=self.alpha or None,
            validation_data=validation, callbacks=callbacks)
        self.loss_curve_ = list(self.history_.train_loss)
        self.n_iter_ = len(self.loss_curve_)
        return self

    def _outputs(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier (softmax cross-entropy) trained with mlp-backend.

    ``hidden_layer_sizes``, ``activation`` (relu, tanh, sigmoid, leaky_relu, elu, selu), ``optimizer``
    (sgd, momentum, nesterov, rmsprop, adam, adamw), ``learning_rate``, ``batch_size``, ``epochs``,
    ``alpha`` (L2 penalty on weights), ``dropout``, ``early_stopping``, ``backend``, ``dtype`` (None: the
    input's, float32 or float64), ``kernels``, ``random_state``. Labels may be any sortable values (kept in
    ``classes_``).
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=False)
        check_classification_targets(y)
        self._encoder = LabelEncoder().fit(y)
        self.classes_ = self._encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"MLPClassifier needs samples of at least 2 classes; got 1 class ({self.classes_[0]!r})")
        return self._train(X, self._encoder.transform(y), len(self.classes_), "cross_entropy")

    def predict_proba(self, X):
        X = self._outputs(X)
        return np.asarray(self.model_.predict_proba(X), dtype=np.float64)

    def predict(self, X):
        X = self._outputs(X)
        return self.classes_[np.asarray(self.model_.predict(X))]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (mean squared error, identity output) trained with mlp-backend.

    Targets are standardised internally (and predictions mapped back), so the defaults train well on
    targets of any scale. Same parameters as :class:`MLPClassifier`.
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=True, multi_output=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self._y_mean = y2.mean(axis=0)
        self._y_scale = np.where(y2.std(axis=0) > 0, y2.std(axis=0), 1.0)
        return self._train(X, (y2 - self._y_mean) / self._y_scale, y2.shape[1], "mse")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X):
        X = self._outputs(X)
        out = np.asarray(self.model_.predict(X), dtype=np.float64).reshape(-1, len(self._y_mean))
        out = out * self._y_scale + self._y_mean
        return out.ravel() if self._y_1d else out
