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

Also as scikit-learn's: parameters checked against the same constraints (its ``_parameter_constraints`` and
``_fit_context``: NumPy scalars and ``n_iter_no_change=np.inf`` accepted, the same error messages), CSR/CSC
input (densified: the layers multiply dense rows), float32 kept float32, "Solver produced non-finite parameter
weights" on divergence (with ``early_stopping``, a NaN validation score and the best weights kept instead),
its rules for ``classes_`` across ``warm_start`` and ``partial_fit``, ``n_iter_`` per call and ``t_`` over all,
no ``partial_fit`` for 'lbfgs', single-class targets, and its initial ranges for weights and biases.
``sample_weight``: each batch's loss the weighted mean of its samples' (the L2 term is divided by the batch size,
where scikit-learn divides it by the batch's weight sum). Not as scikit-learn: the random draws themselves, so
results agree within seed noise, not to the bit; a diverging run stops at its first non-finite loss.
"""
from __future__ import annotations

import math
import textwrap
import warnings
from numbers import Integral, Real
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (_check_partial_fit_first_call, check_classification_targets, type_of_target,
                                      unique_labels)
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from .backend import BACKENDS, to_numpy
from .kernels import MODES
from .kernels.activations import ACTIVATIONS
from .layers import build_mlp
from .losses import L2, BinaryCrossEntropy, Loss, MeanSquaredError, SoftmaxCrossEntropy
from .optim import SGD, Adam
from .train import Callback
from .types import ArrayLike

if TYPE_CHECKING:
    from typing import Self

ACTIVATION_NAMES = {"logistic": "sigmoid"}  # scikit-learn's names for ours; every table name is accepted too
NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large values and need to be "
              "preprocessed.")


def _dense_rows(X):
    """Sparse input as dense rows: the layers multiply dense arrays, on every backend."""
    return X.toarray() if sp.issparse(X) else X


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


class _Iterations(Callback):
    """scikit-learn's per-iteration bookkeeping and rules as a callback of the estimator's one ``fit``: ``n_iter_``,
    ``t_``, ``loss_curve_``; ``tol`` over ``n_iter_no_change`` epochs on the training loss or, with early stopping,
    the held-out score; 'invscaling' (``lr_init / (t_ + 1) ** power_t`` after each epoch) and 'adaptive' (the step
    divided by 5 instead of stopping) through the optimizer's ``lr_scale``."""

    def __init__(self, estimator, validation, n: int):
        self.estimator, self.validation, self.n, self.stopped = estimator, validation, n, False

    def on_epoch_end(self, state, logs):
        est, optimizer = self.estimator, state.optimizer
        est.n_iter_ += 1
        est.t_ += self.n
        est.loss_ = logs["train_loss"]
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        est._update_no_improvement_count(self.validation)
        sgd = est.solver == "sgd"
        if sgd and est.learning_rate == "invscaling":
            optimizer.lr_scale = 1.0 / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            if sgd and est.learning_rate == "adaptive" and optimizer.current_lr() > 1e-6:
                optimizer.lr_scale /= 5.0  # as scikit-learn: a smaller step instead of stopping
                est._no_improvement_count = 0
            else:
                self.stopped = state.stop = True


class _BaseMLP(BaseEstimator):
    def __init__(self, hidden_layer_sizes: ArrayLike = (100,), activation: str = "relu", *, solver: str = "adam",
                 alpha: float = 0.0001, batch_size: int | str = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: int | np.random.RandomState | None = None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: int | float = 10,
                 max_fun: int = 15000, backend: str = "numpy", device: str | int | None = None,
                 dtype: str | None = None, kernels: str | None = None, dropout: float = 0.0):
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

    # -- parameters: scikit-learn's constraints, checked by its _fit_context on fit and partial_fit ----------
    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({*ACTIVATION_NAMES, *ACTIVATIONS})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "backend": [StrOptions(set(BACKENDS))],
        "device": "no_validation",
        "dtype": [StrOptions({"float32", "float64"}), None],
        "kernels": [StrOptions(set(MODES)), None],
        "dropout": [Interval(Real, 0, 1, closed="left")],
    }

    def _seed(self) -> int:
        rs = self.random_state
        if isinstance(rs, (int, np.integer)):
            return int(rs)
        return int((rs if isinstance(rs, np.random.RandomState) else np.random.RandomState(rs)).randint(2**31 - 1))

    def _check_solver(self) -> bool:
        """partial_fit exists for the stochastic solvers only (scikit-learn's ``available_if``)."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    # -- training: scikit-learn's _fit, step for step --------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        """Fit the model to data; see scikit-learn's.

        Parameters
        ----------
        X : array-like or sparse matrix
            (n_samples, n_features); CSR/CSC input is densified.
        y : array-like
            (n_samples,) or (n_samples, n_outputs) targets: labels, a multilabel indicator matrix, or values.
        sample_weight : array-like, optional
            One weight per sample; each batch's loss is the weighted mean of its samples'.

        Returns
        -------
        self
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental):
        hidden = [self.hidden_layer_sizes] if np.isscalar(self.hidden_layer_sizes) else list(self.hidden_layer_sizes)
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        X = _dense_rows(X)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
            if np.all(sample_weight == 1):
                sample_weight = None  # unit weights change nothing: the unweighted path, bit for bit
        targets, n_outputs, out_activation = self._encode(y)
        self.n_outputs_ = n_outputs
        if first_pass:
            self._build(X.shape[1], hidden, n_outputs, out_activation, X.dtype.name)
        loss = self._loss()
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, targets, loss, sample_weight)
        else:
            self._fit_stochastic(X, targets, loss, sample_weight, incremental)
        if not all(np.isfinite(w).all() for w in (*self.coefs_, *self.intercepts_)):
            raise ValueError(NON_FINITE)
        return self

    def _build(self, n_features, hidden, n_outputs, output_activation, dtype):
        activation = ACTIVATION_NAMES.get(self.activation, self.activation)
        # scikit-learn's initial ranges: weights and biases U(+-sqrt(6 / (fan_in + fan_out))), 2 for logistic units
        init = "glorot_uniform:2" if activation == "sigmoid" else "glorot_uniform"
        self.model_ = build_mlp([n_features, *map(int, hidden), n_outputs], activation, dropout=self.dropout,
                                backend=self.backend, device=self.device, dtype=self.dtype or dtype, seed=self._seed(),
                                kernels=self.kernels, init=init, bias_init=init)
        self.n_layers_, self.out_activation_ = len(hidden) + 2, output_activation
        self.t_, self.n_iter_ = 0, 0
        self._seeded = False
        self._no_improvement_count = 0
        if self.solver != "lbfgs":
            self.loss_curve_ = []
            early = self.early_stopping
            self.best_loss_ = None if early else math.inf
            self.validation_scores_ = [] if early else None
            self.best_validation_score_ = -math.inf if early else None
            self._best_params = None

    def _new_optimizer(self):
        if self.solver == "sgd":
            return SGD(self.learning_rate_init, momentum=self.momentum,
                       nesterov=self.nesterovs_momentum and self.momentum > 0)
        return Adam(self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon)

    def _split(self, X, targets, sample_weight, seed):
        """scikit-learn's early-stopping split: stratified for single-output classifiers only."""
        stratify = targets > 0.5 if is_classifier(self) and self.n_outputs_ == 1 else None  # its bool labels
        w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
        X, X_val, targets, y_val, w, w_val = train_test_split(
            X, targets, w, random_state=seed, test_size=self.validation_fraction, stratify=stratify)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your "
                             "dataset.")
        return X, targets, None if sample_weight is None else w, (X_val, y_val, w_val)

    def _fit_stochastic(self, X, targets, loss, sample_weight, incremental):
        # as scikit-learn, every fit starts a fresh optimizer; partial_fit continues the model's (kept by the
        # model, which pickles it)
        optimizer = self.model_.optimizer
        if not incremental or optimizer is None:
            optimizer = self._new_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        seed = self._seed()
        validation = None
        if self.early_stopping:
            X, targets, sample_weight, validation = self._split(X, targets, sample_weight, seed)
        n = X.shape[0]
        if self.batch_size != "auto" and self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        batch = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        self.n_iter_ = 0
        iterations = _Iterations(self, validation, n)
        try:  # one fit: the iterations are its epochs, scikit-learn's rules its callback
            self.model_.fit(X, targets, loss=loss, optimizer=optimizer, epochs=1 if incremental else self.max_iter,
                            batch_size=batch, shuffle=self.shuffle, seed=None if self._seeded else seed,
                            penalty=L2(self.alpha / batch) if self.alpha else None, sample_weight=sample_weight,
                            callbacks=[iterations])
        except FloatingPointError:
            # the weights are the last finite ones (the step stops before its update); scikit-learn's weights
            # overflow and it raises, or, with early stopping, scores NaN and keeps its best
            if validation is None:
                raise ValueError(NON_FINITE) from None
            self.loss_ = math.nan
            self.loss_curve_.append(self.loss_)
            self.validation_scores_.append(math.nan)
        self._seeded = True
        if not incremental and self.n_iter_ == self.max_iter and not iterations.stopped:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)
        if validation is not None and self._best_params is not None:
            self.model_.flat_params[...] = self.model_.be.asarray(self._best_params)

    def _update_no_improvement_count(self, validation):
        if validation is not None:
            score = self._score_arrays(*validation)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            worse = score < self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = np.array(to_numpy(self.model_.flat_params), copy=True)
        else:
            worse = self.loss_ > self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, self.loss_)
        self._no_improvement_count = self._no_improvement_count + 1 if worse else 0

    def _fit_lbfgs(self, X, targets, loss, sample_weight):
        from scipy.optimize import minimize

        from .step import StepProgram

        model, be = self.model_, self.model_.be
        model.loss = loss  # what predict_proba reads
        Xd, yd = be.asarray(X), (be.asarray_int(targets) if targets.ndim == 1 and loss.task == "multiclass"
                                 else be.asarray(targets))
        n = X.shape[0] if sample_weight is None else float(sample_weight.sum())  # scikit-learn's sw_sum
        wd = None if sample_weight is None else be.asarray(sample_weight)
        # the training step's own loss and gradient: sample weights and the L2 term as a mini-batch's
        program = StepProgram(model, loss, None, steps=1, penalty=L2(self.alpha / n) if self.alpha else None,
                              check_finite=False)

        def loss_and_grad(flat):
            model.flat_params[...] = be.asarray(flat)
            value = program.loss_and_gradient(Xd, yd, wd)
            return float(value), np.asarray(to_numpy(model.flat_grads), dtype=np.float64)

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

    def _host_input(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32))
        return _dense_rows(X)

    def _out_dtype(self, X):
        """scikit-learn's output dtype: the input's and the weights', promoted (float32 stays float32)."""
        return np.result_type(X.dtype, self.model_.be.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        tags.input_tags.sparse = True
        return tags


# The parameters and fitted attributes both estimators share, written once into their docstrings (``_documented``).
_PARAMETERS = """\
hidden_layer_sizes : array-like of int, default (100,)
    The sizes of the hidden layers.
activation : str, default "relu"
    The hidden layers' activation: scikit-learn's ``"identity"``, ``"logistic"``, ``"tanh"``, ``"relu"``,
    or any of the activation table (``"leaky_relu"``, ``"elu"``, ``"selu"``, ``"gelu"``, ``"sigmoid"``).
solver : {"adam", "sgd", "lbfgs"}, default "adam"
    Adam; SGD with momentum; or SciPy's L-BFGS-B on the flat parameter vector (full batch).
alpha : float, default 1e-4
    L2 penalty strength: ``alpha / 2 * sum(W**2)`` divided by the batch's sample count, as scikit-learn's.
batch_size : int or "auto", default "auto"
    Mini-batch size for adam and sgd; "auto" is ``min(200, n_samples)``.
learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
    The sgd solver's schedule: constant; ``learning_rate_init / t**power_t``; or divided by 5 whenever
    two consecutive epochs fail to improve by ``tol``.
learning_rate_init : float, default 1e-3
    The initial learning rate (adam, sgd).
power_t : float, default 0.5
    The exponent of "invscaling".
max_iter : int, default 200
    Epochs for adam and sgd; iterations for lbfgs.
shuffle : bool, default True
    Shuffle the samples every epoch (adam, sgd).
random_state : int, RandomState instance or None, default None
    Seeds initialisation, shuffling, dropout and the validation split.
tol : float, default 1e-4
    Improvement below which an epoch counts as not improving.
verbose : bool, default False
    Print the loss every epoch.
warm_start : bool, default False
    Continue from the previous fit's weights.
momentum : float, default 0.9
    The sgd solver's momentum, in [0, 1].
nesterovs_momentum : bool, default True
    Nesterov's momentum (sgd with momentum > 0).
early_stopping : bool, default False
    Hold out ``validation_fraction`` of the training data and stop when its score has not improved by
    ``tol`` for ``n_iter_no_change`` epochs, keeping the best weights.
validation_fraction : float, default 0.1
    The held-out fraction for ``early_stopping``.
beta_1 : float, default 0.9
    Adam's first-moment decay.
beta_2 : float, default 0.999
    Adam's second-moment decay.
epsilon : float, default 1e-8
    Adam's denominator term.
n_iter_no_change : int or numpy.inf, default 10
    Epochs without improvement before stopping (adam, sgd).
max_fun : int, default 15000
    The lbfgs solver's maximum number of loss evaluations.
backend : {"numpy", "torch", "array_api_strict", "cupy"}, default "numpy"
    The array library training runs on (keyword only; inputs and outputs stay NumPy).
device : str or int, optional
    The backend's device (``"cuda:0"`` for torch, a GPU number for CuPy).
dtype : {"float32", "float64"}, optional
    Training dtype (default: float32 input stays float32, anything else float64, as scikit-learn).
kernels : {"auto", "numba", "reference"}, optional
    Fused or reference kernels (default: ``MLP_KERNELS``, else "auto").
dropout : float, default 0.0
    Dropout rate after each hidden layer (not in scikit-learn)."""

_ATTRIBUTES = """\
loss_ : float
    The last epoch's training loss (with the L2 term).
best_loss_ : float or None
    The best training loss (None with ``early_stopping``).
loss_curve_ : list of float
    The loss of every epoch (adam, sgd).
validation_scores_ : list of float or None
    The held-out score of every epoch (``early_stopping``).
best_validation_score_ : float or None
    The best held-out score (``early_stopping``).
t_ : int
    Training samples seen over all calls.
coefs_ : list of numpy.ndarray
    Weight matrices, (fan_in, fan_out) each.
intercepts_ : list of numpy.ndarray
    Bias vectors, one per layer.
n_features_in_ : int
    Features seen in fit.
feature_names_in_ : numpy.ndarray
    Column names of a data frame given to fit.
n_iter_ : int
    Epochs (or L-BFGS iterations) of the last call.
n_layers_ : int
    Layers, input and output included.
n_outputs_ : int
    Output units.
out_activation_ : str
    The output activation.
model_ : mlp_backend.Sequential
    The trained network."""


def _documented(cls):
    """``cls``'s docstring with the shared parameters and attributes where it says ``{parameters}`` and
    ``{attributes}``."""
    def block(text):
        return textwrap.indent(text, "    ")[4:]
    cls.__doc__ = cls.__doc__.replace("{parameters}", block(_PARAMETERS)).replace("{attributes}", block(_ATTRIBUTES))
    return cls


@_documented
class MLPClassifier(ClassifierMixin, _BaseMLP):
    """scikit-learn's MLPClassifier, trained by mlp-backend.

    Softmax outputs for several classes, one logistic output for two (or one), logistic outputs for multilabel
    indicator targets. The same parameters, defaults, attributes and behaviours as
    ``sklearn.neural_network.MLPClassifier``, plus the keyword-only ``backend``, ``device``, ``dtype``,
    ``kernels`` and ``dropout``.

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    classes_ : numpy.ndarray
        The class labels (or, for multilabel targets, the label columns).
    {attributes}
    """

    def _validate_input(self, X, y, incremental, reset):
        """scikit-learn's checks, and its rules for when ``classes_`` is set anew or must match."""
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        y = _column_to_1d(y)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        return X, y

    @property
    def _multilabel(self):
        return self._label_binarizer.y_type_.startswith("multilabel")

    def _encode(self, y):
        """``(targets, n_outputs, out_activation)``: class indices for softmax outputs, 0/1 columns for logistic
        ones (two classes: one column; one class: a column of zeros, as scikit-learn's LabelBinarizer)."""
        if self._multilabel:
            return np.asarray(y, dtype=np.float64), len(self.classes_), "logistic"
        index = np.searchsorted(self.classes_, y)
        if len(self.classes_) <= 2:
            return index.astype(np.float64).reshape(-1, 1), 1, "logistic"
        return index, len(self.classes_), "softmax"

    def _loss(self):
        if self.out_activation_ == "softmax":
            return SoftmaxCrossEntropy()
        return _Scaled(BinaryCrossEntropy(), float(self.n_outputs_))  # summed over labels, as scikit-learn

    @available_if(lambda self: self._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
                    classes: ArrayLike | None = None) -> Self:
        """One pass (epoch) over ``(X, y)``, from the current weights (adam and sgd only).

        Parameters
        ----------
        X : array-like or sparse matrix
            (n_samples, n_features); CSR/CSC input is densified.
        y : array-like
            Labels, or a multilabel indicator matrix.
        sample_weight : array-like, optional
            One weight per sample.
        classes : array-like, optional
            Every label that will ever be seen (for multilabel targets, the label columns); needed on the first
            call.

        Returns
        -------
        self
            The updated estimator.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
            self.classes_ = self._label_binarizer.classes_
        return self._fit(X, y, sample_weight, incremental=True)

    def _probabilities(self, X):
        return np.asarray(to_numpy(self.model_.predict_proba(X)), dtype=self._out_dtype(X))

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like or sparse matrix
            (n_samples, n_features); CSR/CSC input is densified.

        Returns
        -------
        numpy.ndarray
            (n_samples, n_classes) probabilities, columns in ``classes_`` order.
        """
        X = self._host_input(X)
        p = self._probabilities(X)
        if self.n_outputs_ == 1:
            p = p.reshape(-1)
            return np.column_stack([1 - p, p])
        return p

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Logarithms of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like or sparse matrix
            (n_samples, n_features); CSR/CSC input is densified.

        Returns
        -------
        numpy.ndarray
            (n_samples, n_classes) log-probabilities.
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels.

        Parameters
        ----------
        X : array-like or sparse matrix
            (n_samples, n_features); CSR/CSC input is densified.

        Returns
        -------
        numpy.ndarray
            (n_samples,) labels from ``classes_``, or a (n_samples, n_labels) indicator matrix.
        """
        X = self._host_input(X)
        p = self._probabilities(X)
        if self._multilabel:
            return (p > 0.5).astype(int)
        if self.n_outputs_ == 1:
            return self.classes_[np.minimum((p.reshape(-1) > 0.5).astype(int), len(self.classes_) - 1)]
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


@_documented
class MLPRegressor(RegressorMixin, _BaseMLP):
    """scikit-learn's MLPRegressor, trained by mlp-backend.

    Identity outputs and half squared error (``loss="squared_error"``), or exp outputs and half Poisson
    deviance (``loss="poisson"``). The same parameters, defaults, attributes and behaviours as
    ``sklearn.neural_network.MLPRegressor``, plus the keyword-only ``backend``, ``device``, ``dtype``,
    ``kernels`` and ``dropout``.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default "squared_error"
        The loss; "poisson" needs non-negative targets.
    {parameters}

    Attributes
    ----------
    {attributes}
    """

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: ArrayLike = (100,), activation: str = "relu",
                 *, solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001, power_t: float = 0.5,
                 max_iter: int = 200, shuffle: bool = True, random_state: int | np.random.RandomState | None = None,
                 tol: float = 1e-4, verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int | float = 10, max_fun: int = 15000, backend: str = "numpy",
                 device: str | int | None = None, dtype: str | None = None, kernels: str | None = None,
                 dropout: float = 0.0):
        # loss first, as scikit-learn's MLPRegressor has it (scikit-learn reads the parameters from this signature)
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start,
            momentum=momentum, nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, max_fun=max_fun, backend=backend, device=device, dtype=dtype,
            kernels=kernels, dropout=dropout)
        self.loss = loss

    _parameter_constraints = {**_BaseMLP._parameter_constraints,
                              "loss": [StrOptions({"squared_error", "poisson"})]}

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        return X, _column_to_1d(y)

    def _encode(self, y):
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if self.loss == "poisson" and np.any(y2 < 0):
            raise ValueError("loss='poisson' needs non-negative targets")
        return y2, y2.shape[1], "exp" if self.loss == "poisson" else "identity"

    def _loss(self):
        return _PoissonDeviance() if self.loss == "poisson" else _Scaled(MeanSquaredError(), 0.5)

    @available_if(lambda self: self._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        """One pass (epoch) over ``(X, y)``, from the current weights (adam and sgd only).

        Parameters
        ----------
        X : array-like or sparse matrix
            (n_samples, n_features); CSR/CSC input is densified.
        y : array-like
            Targets.
        sample_weight : array-like, optional
            One weight per sample.

        Returns
        -------
        self
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def _outputs_of(self, X):
        out = np.asarray(to_numpy(self.model_.predict(X)), dtype=self._out_dtype(X)).reshape(X.shape[0], -1)
        return np.exp(out) if self.out_activation_ == "exp" else out

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted values.

        Parameters
        ----------
        X : array-like or sparse matrix
            (n_samples, n_features); CSR/CSC input is densified.

        Returns
        -------
        numpy.ndarray
            (n_samples,) or (n_samples, n_outputs) values.
        """
        out = self._outputs_of(self._host_input(X))
        return out.ravel() if out.shape[1] == 1 else out

    def _score_arrays(self, X, targets, weights):
        from sklearn.metrics import r2_score

        return float(r2_score(targets, self._outputs_of(X).reshape(targets.shape), sample_weight=weights))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
