"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor``, name for name, trained by mlp-backend on any backend.

A scikit-learn MLP script runs unchanged but for the import: the same constructor parameters and defaults
(``hidden_layer_sizes``, ``activation`` including ``'logistic'``, ``solver`` 'adam' / 'sgd' / 'lbfgs',
``alpha``, ``batch_size='auto'``, ``learning_rate`` 'constant' / 'invscaling' / 'adaptive',
``learning_rate_init``, ``power_t``, ``max_iter``, ``shuffle``, ``tol``, ``verbose``, ``warm_start``,
``momentum``, ``nesterovs_momentum``, ``early_stopping``, ``validation_fraction``, ``beta_1``, ``beta_2``,
``epsilon``, ``n_iter_no_change``, ``max_fun``), the same fitted attributes (``coefs_``, ``intercepts_``,
``loss_``, ``best_loss_``, ``loss_curve_``, ``validation_scores_``, ``best_validation_score_``, ``n_iter_``,
``t_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``, ``classes_``), the same losses (log-loss;
half squared error; for two classes and for multilabel targets, logistic outputs) and the same stopping
rules (``tol`` over ``n_iter_no_change`` epochs on the training loss, or on the validation score with
``early_stopping``; 'adaptive' divides the step by 5 instead of stopping; ConvergenceWarning at ``max_iter``).
Our own keyword-only extras: ``backend`` (numpy, torch, cupy, array_api_strict), ``device``, ``dtype``,
``kernels``, ``dropout``. Inputs and outputs are host (NumPy) arrays whatever the backend, so pipelines,
``GridSearchCV`` and ``cross_val_score`` work unchanged, on a GPU with ``backend='cupy'``.

``sample_weight`` as scikit-learn's: each batch's loss the weighted mean of its samples' (the L2 term is
divided by the batch size, where scikit-learn divides it by the batch's weight sum). Not (yet) as
scikit-learn: the initial values (uniform Glorot for the weights as scikit-learn,
but its narrower range for logistic units is not copied, and biases start at zero where scikit-learn draws
them too), so results agree within seed noise, not to the bit; ``partial_fit`` runs one epoch of our loop.
"""
from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from .backend import to_numpy
from .layers import build_mlp
from .losses import L2, BinaryCrossEntropy, Loss, MeanSquaredError, SoftmaxCrossEntropy
from .optim import SGD, Adam

ACTIVATION_NAMES = {"logistic": "sigmoid"}  # scikit-learn's names for ours; every table name is accepted too


def _column_to_1d(y):
    """A column vector as 1-D, with scikit-learn's DataConversionWarning (its MLP does the same)."""
    return column_or_1d(y, warn=True) if y.ndim == 2 and y.shape[1] == 1 else y


class _Scaled(Loss):
    """``factor`` times another loss: scikit-learn's half squared error, and its multilabel log-loss summed
    over labels."""

    def __init__(self, base: Loss, factor: float):
        self.base, self.factor = base, factor
        self.name, self.task, self.link = base.name, base.task, base.link

    def value_and_grad(self, xp, ops, output, target):
        value, grad = self.base.value_and_grad(xp, ops, output, target)
        return value * self.factor, grad * self.factor

    def per_sample(self, xp, output, target):
        return self.base.per_sample(xp, output, target) * self.factor

    def probabilities(self, xp, output):
        return self.base.probabilities(xp, output)


class _PoissonDeviance(Loss):
    """scikit-learn's 'poisson' loss: half the Poisson deviance of ``mu = exp(output)``, summed over outputs and
    averaged over samples; its gradient in the output is ``(mu - y) / n`` (the exp link is canonical)."""

    name, task, link = "poisson", "regression", "exp"

    def per_sample(self, xp, output, target):
        t = xp.reshape(target, output.shape)
        y_log_y = xp.where(t > 0, t * xp.log(xp.where(t > 0, t, 1.0)), 0.0)
        return xp.sum(y_log_y - t * output - t + xp.exp(output), axis=1)

    def value_and_grad(self, xp, ops, output, target):
        t = xp.reshape(target, output.shape)
        return xp.mean(self.per_sample(xp, output, target)), (xp.exp(output) - t) / output.shape[0]

    def probabilities(self, xp, output):
        return xp.exp(output)


def _dense_parameters(name, doc):
    """A scikit-learn attribute (``coefs_``, ``intercepts_``) read from and written into the model's layers."""
    def get(self):
        return [to_numpy(layer.params[name]) for layer in self._dense()]

    def put(self, values):
        for layer, value in zip(self._dense(), values, strict=True):
            layer.params[name][...] = self.model_.be.asarray(np.asarray(value))
    return property(get, put, doc=doc)


class _BaseMLP(BaseEstimator):
    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend="numpy", device=None, dtype=None,
                 kernels=None, dropout=0.0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.kernels = kernels
        self.dropout = dropout

    # -- scikit-learn's attributes, read from (and written into) the model ---------------------------------
    def _dense(self):
        return [layer for layer in self.model_.layers if "W" in layer.params]

    coefs_ = _dense_parameters("W", "Weight matrices, (fan_in, fan_out) each, as host arrays (views on numpy).")
    intercepts_ = _dense_parameters("b", "Bias vectors, one per layer, as host arrays (views on numpy).")

    # -- checks ----------------------------------------------------------------------------------------
    def _check_params(self):
        for name in ("max_iter", "n_iter_no_change", "max_fun"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.solver not in ("adam", "sgd", "lbfgs"):
            raise ValueError(f"solver must be 'adam', 'sgd' or 'lbfgs', got {self.solver!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError("learning_rate must be 'constant', 'invscaling' or 'adaptive', "
                             f"got {self.learning_rate!r}")
        if not (isinstance(self.alpha, (int, float)) and self.alpha >= 0):
            raise ValueError(f"alpha must be a non-negative number, got {self.alpha!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if not (self.learning_rate_init > 0):
            raise ValueError(f"learning_rate_init must be positive, got {self.learning_rate_init!r}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got {self.batch_size!r}")

    def _seed(self) -> int:
        rs = self.random_state
        if isinstance(rs, (int, np.integer)):
            return int(rs)
        return int((rs if isinstance(rs, np.random.RandomState) else np.random.RandomState(rs)).randint(2**31 - 1))

    # -- training ----------------------------------------------------------------------------------------
    def _build(self, n_features, n_outputs, output_activation, seed, dtype):
        hidden = [self.hidden_layer_sizes] if np.isscalar(self.hidden_layer_sizes) else list(self.hidden_layer_sizes)
        if any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        activation = ACTIVATION_NAMES.get(self.activation, self.activation)
        self.model_ = build_mlp([n_features, *map(int, hidden), n_outputs], activation, dropout=self.dropout,
                                backend=self.backend, device=self.device, dtype=self.dtype or dtype, seed=seed,
                                kernels=self.kernels, init="glorot_uniform")
        self.n_layers_, self.n_outputs_, self.out_activation_ = len(hidden) + 2, n_outputs, output_activation
        self.t_, self.n_iter_, self.loss_curve_ = 0, 0, []
        self._seeded = False

    def _new_optimizer(self):
        if self.solver == "sgd":
            return SGD(self.learning_rate_init, momentum=self.momentum,
                       nesterov=self.nesterovs_momentum and self.momentum > 0)
        return Adam(self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon)

    def _fit(self, X, targets, loss, sample_weight, *, incremental=False, stratify=None):
        self._check_params()
        seed = self._seed()
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
            if np.all(sample_weight == 1):
                sample_weight = None  # unit weights change nothing: the unweighted path, bit for bit
        if self.solver == "lbfgs":
            if incremental:
                raise AttributeError("partial_fit is only available for stochastic solvers (sgd, adam), not lbfgs")
            return self._fit_lbfgs(X, targets, loss, sample_weight)
        # as scikit-learn, every fit starts a fresh optimizer; partial_fit continues the model's (kept by the
        # model, which pickles it)
        optimizer = self.model_.optimizer
        if not incremental or optimizer is None:
            optimizer = self._new_optimizer()
        validation = None
        early = self.early_stopping and not incremental
        if early:
            w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
            X, X_val, targets, y_val, w_train, w_val = train_test_split(
                X, targets, w, random_state=seed, test_size=self.validation_fraction, stratify=stratify)
            validation = (X_val, y_val, w_val)
            sample_weight = None if sample_weight is None else w_train
        n = X.shape[0]
        batch = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        if not incremental or not hasattr(self, "_no_improvement_count"):
            self._no_improvement_count = 0
            self.best_loss_ = None if early else math.inf
            self.validation_scores_ = [] if early else None
            self.best_validation_score_ = -math.inf if early else None
            best_params = None
        for _ in range(1 if incremental else self.max_iter):
            history = self.model_.fit(X, targets, loss=loss, optimizer=optimizer, epochs=1, batch_size=batch,
                                      shuffle=self.shuffle, seed=None if self._seeded else seed,
                                      penalty=L2(self.alpha / batch) if self.alpha else None,
                                      sample_weight=sample_weight)
            self._seeded = True
            self.n_iter_ += 1
            self.t_ += n
            self.loss_ = history.train_loss[-1]
            self.loss_curve_.append(self.loss_)
            if self.learning_rate == "invscaling" and self.solver == "sgd":
                optimizer.lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if early:
                score = self._score_arrays(*validation)
                self.validation_scores_.append(score)
                improved = score >= self.best_validation_score_ + self.tol
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best_params = np.array(to_numpy(self.model_.flat_params), copy=True)
            else:
                improved = self.loss_ <= self.best_loss_ - self.tol
                self.best_loss_ = min(self.best_loss_, self.loss_)
            self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
            if incremental:
                break
            if self._no_improvement_count > self.n_iter_no_change:
                if self.learning_rate == "adaptive" and self.solver == "sgd" and optimizer.lr > 1e-6:
                    optimizer.lr /= 5.0  # as scikit-learn: a smaller step instead of stopping
                    self._no_improvement_count = 0
                    continue
                break
        else:
            if not incremental:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning)
        if early and best_params is not None:
            self.model_.flat_params[...] = self.model_.be.asarray(best_params)
        return self

    def _fit_lbfgs(self, X, targets, loss, sample_weight):
        from scipy.optimize import minimize

        model, be = self.model_, self.model_.be
        model.loss = loss  # what predict_proba reads
        Xd, yd = be.asarray(X), (be.asarray_int(targets) if targets.ndim == 1 and loss.task == "multiclass"
                                 else be.asarray(targets))
        weights = [layer.params["W"] for layer in self._dense()]
        grads = [layer.grads["W"] for layer in self._dense()]
        n = X.shape[0] if sample_weight is None else float(sample_weight.sum())  # scikit-learn's sw_sum
        weights_d = None if sample_weight is None else be.asarray(sample_weight / sample_weight.sum())

        def loss_and_grad(flat):
            model.flat_params[...] = be.asarray(flat)
            out = model.forward(Xd, training=True)
            value, grad = loss.value_and_grad(be.xp, model.ops, out, yd)
            if weights_d is not None:  # rows reweighted from 1/N to w_i / sum(w), as in fit
                value = be.xp.sum(loss.per_sample(be.xp, out, yd) * weights_d)
                grad = grad * be.xp.reshape(weights_d * X.shape[0], (-1, 1))
            model.backward(grad)
            value = float(value) + sum(0.5 * self.alpha * float(be.xp.sum(w * w)) for w in weights) / n
            for w, g in zip(weights, grads):
                g += (self.alpha / n) * w
            return value, np.asarray(to_numpy(model.flat_grads), dtype=np.float64)

        start = np.asarray(to_numpy(model.flat_params), dtype=np.float64)
        result = minimize(loss_and_grad, start, method="L-BFGS-B", jac=True,
                          options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        model.flat_params[...] = be.asarray(result.x)
        self.n_iter_ = int(result.nit)
        self.loss_ = float(result.fun)
        self.loss_curve_ = None
        self.best_loss_ = self.loss_
        self.validation_scores_ = self.best_validation_score_ = None
        if result.status == 1:
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) (max_iter={self.max_iter}, "
                          f"max_fun={self.max_fun}); increase them or scale the data", ConvergenceWarning)
        return self

    def _start(self, X, n_outputs, output_activation, reuse: bool):
        """Build the model unless ``reuse`` and one of the right shape exists (warm starts, partial_fit)."""
        fits = (hasattr(self, "model_") and self.model_.in_features == X.shape[1]
                and self.model_.out_features == n_outputs)
        if not (reuse and fits):
            self._build(X.shape[1], n_outputs, output_activation, self._seed(), X.dtype.name)

    def _host_input(self, X):
        check_is_fitted(self, "model_")
        return validate_data(self, X, reset=False, dtype=(np.float64, np.float32))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """scikit-learn's MLPClassifier, trained by mlp-backend: softmax outputs for several classes, one logistic
    output for two, logistic outputs for multilabel indicator targets."""

    def _targets(self, y, classes=None, reset=True):
        if reset:
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(classes if classes is not None else y)
            self.classes_ = self._label_binarizer.classes_
            self._multilabel = self._label_binarizer.y_type_.startswith("multilabel")
        if self._multilabel:
            return np.asarray(y, dtype=np.float64), len(self.classes_), "logistic"
        if len(self.classes_) < 2:
            raise ValueError(f"MLPClassifier needs samples of at least 2 classes; got 1 class ({self.classes_[0]!r})")
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if unseen.size:
            raise ValueError(f"y has labels not in classes_: {unseen.tolist()}")
        index = np.searchsorted(self.classes_, y)
        if len(self.classes_) == 2:
            return index.astype(np.float64).reshape(-1, 1), 1, "logistic"
        return index, len(self.classes_), "softmax"

    def _loss(self):
        if self.out_activation_ == "softmax":
            return SoftmaxCrossEntropy()
        return _Scaled(BinaryCrossEntropy(), float(self.n_outputs_))  # summed over labels, as scikit-learn

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True)
        y = _column_to_1d(y)
        check_classification_targets(y)
        targets, outputs, out_activation = self._targets(y)
        self._start(X, outputs, out_activation, reuse=self.warm_start)
        stratify = y if out_activation == "softmax" else None  # as scikit-learn: multiclass targets only
        return self._fit(X, targets, self._loss(), sample_weight, stratify=stratify)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One pass over ``(X, y)``; ``classes`` (every label that will ever be seen) on the first call."""
        first = not hasattr(self, "model_")
        if first and classes is None and type_of_target(y) != "multilabel-indicator":
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True, reset=first)
        check_classification_targets(y)
        targets, outputs, out_activation = self._targets(y, classes, reset=first)
        if first:
            self._start(X, outputs, out_activation, reuse=False)
        return self._fit(X, targets, self._loss(), sample_weight, incremental=True)

    def _probabilities(self, X):
        return np.asarray(to_numpy(self.model_.predict_proba(X)), dtype=np.float64)

    def predict_proba(self, X):
        X = self._host_input(X)
        p = self._probabilities(X)
        if self.out_activation_ == "logistic" and not self._multilabel:
            p = p.reshape(-1)
            return np.column_stack([1 - p, p])
        return p

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        X = self._host_input(X)
        p = self._probabilities(X)
        if self._multilabel:
            return (p > 0.5).astype(int)
        if self.out_activation_ == "logistic":
            return self.classes_[(p.reshape(-1) > 0.5).astype(int)]
        return self.classes_[np.argmax(p, axis=1)]

    def _score_arrays(self, X, targets, weights):
        p = self._probabilities(X)
        if self._multilabel:
            right = np.all((p > 0.5) == (targets > 0.5), axis=1)
        elif self.out_activation_ == "logistic":
            right = (p.reshape(-1) > 0.5) == (targets.reshape(-1) > 0.5)
        else:
            right = np.argmax(p, axis=1) == targets
        return float(np.average(right, weights=weights))


class MLPRegressor(RegressorMixin, _BaseMLP):
    """scikit-learn's MLPRegressor, trained by mlp-backend: identity outputs and half squared error
    (``loss='squared_error'``), or exp outputs and half Poisson deviance (``loss='poisson'``)."""

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", **params):
        super().__init__(hidden_layer_sizes, activation, **params)
        self.loss = loss

    # scikit-learn reads an estimator's parameters from its __init__ signature: loss first, as scikit-learn's
    # MLPRegressor has it, then the base's
    __init__.__signature__ = inspect.signature(_BaseMLP.__init__).replace(parameters=[
        *list(inspect.signature(_BaseMLP.__init__).parameters.values())[:1],
        inspect.Parameter("loss", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="squared_error"),
        *list(inspect.signature(_BaseMLP.__init__).parameters.values())[1:]])

    def _check_params(self):
        super()._check_params()
        if self.loss not in ("squared_error", "poisson"):
            raise ValueError(f"loss must be 'squared_error' or 'poisson', got {self.loss!r}")

    def _loss_and_link(self, y2):
        if self.loss == "poisson":
            if np.any(y2 < 0):
                raise ValueError("loss='poisson' needs non-negative targets")
            return _PoissonDeviance(), "exp"
        return _Scaled(MeanSquaredError(), 0.5), "identity"

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=True, multi_output=True)
        y = _column_to_1d(y)
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        self._y_1d = np.ndim(y) == 1
        self._check_params()
        loss, link = self._loss_and_link(y2)
        self._start(X, y2.shape[1], link, reuse=self.warm_start)
        return self._fit(X, y2, loss, sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=True, multi_output=True,
                             reset=first)
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        self._check_params()
        loss, link = self._loss_and_link(y2)
        if first:
            self._y_1d = np.ndim(y) == 1
            self._start(X, y2.shape[1], link, reuse=False)
        return self._fit(X, y2, loss, sample_weight, incremental=True)

    def _outputs_of(self, X):
        out = np.asarray(to_numpy(self.model_.predict(X)), dtype=np.float64).reshape(X.shape[0], -1)
        return np.exp(out) if self.out_activation_ == "exp" else out

    def predict(self, X):
        out = self._outputs_of(self._host_input(X))
        return out.ravel() if self._y_1d else out

    def _score_arrays(self, X, targets, weights):
        from sklearn.metrics import r2_score

        return float(r2_score(targets, self._outputs_of(X).reshape(targets.shape), sample_weight=weights))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
