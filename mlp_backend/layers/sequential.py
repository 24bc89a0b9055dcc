"""Sequential container: named layers over one flat parameter buffer and one flat gradient buffer.

Every parameter is a view into ``model.flat_params`` (its gradient a view into ``model.flat_grads``),
so an optimizer step is one pass over one buffer, and moving or saving a model moves one array.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .. import kernels
from .. import train
from ..backend import get_backend, to_numpy
from .activations import ACTIVATION_LAYERS, Activation, Softmax
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .norm import BatchNorm1d, LayerNorm
from ..types import ArrayLike, PathLike

if TYPE_CHECKING:
    from ..backends import Backend
    from ..train import History

LAYERS = {cls.__name__: cls for cls in (Dense, Activation, *ACTIVATION_LAYERS.values(), Softmax, Dropout, BatchNorm1d,
                                        LayerNorm)}


class Sequential:
    """Layers applied in order, with their parameters in one flat buffer; trained with :meth:`fit`.

    Parameters
    ----------
    layers : sequence of Layer
        The layers, applied in order (``Dense``, activations, ``Dropout``, ``BatchNorm1d``, ``LayerNorm``,
        ``Softmax``).
    backend : str or Backend, default "numpy"
        ``"numpy"``, ``"array_api_strict"``, ``"torch"`` or ``"cupy"`` (or a Backend instance).
    device : str or int, optional
        The backend's device (``"cuda:0"`` for torch, a GPU number for CuPy); default: the backend's default.
    dtype : {"float32", "float64"}, default "float32"
        Parameter and computation dtype.
    seed : int, default 0
        Seeds initialisation, shuffling and dropout (the same draws on every backend).
    kernels : {"auto", "numba", "reference"}, optional
        Fused or reference kernels (default: the ``MLP_KERNELS`` environment variable, else "auto").
    """

    def __init__(self, layers: Sequence[Layer], *, backend: str | Backend = "numpy", device: str | int | None = None,
                 dtype: str = "float32", seed: int = 0, kernels: str | None = None):
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("Sequential needs at least one layer")
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential takes Layer instances, got {type(layer).__name__}")
        self.names = self.layer_names(self.layers)
        features = None
        for layer in self.layers:
            features = layer.output_features(features)
        self.out_features = features
        self.in_features = next((l.in_features for l in self.layers if isinstance(l, Dense)), None)
        self.be = get_backend(backend, device=device, dtype=dtype, seed=seed)
        self.kernel_mode = kernels
        self.loss = None        # set by fit: the loss, which also fixes what predict_proba returns
        self.optimizer = None   # set by fit: kept so a second fit continues the same optimizer state
        self.history = None
        self._bind(flat=None)
        for layer in self.layers:
            layer.init_params()

    @staticmethod
    def layer_names(layers: Sequence[Layer]) -> list[str]:
        """The names parameters are stored under: ``dense0``, ``dropout1``, ...

        Parameters
        ----------
        layers : sequence of Layer
            The layers, in order.

        Returns
        -------
        list of str
            One name per layer: its kind and position.
        """
        return [f"{layer.kind}{i}" for i, layer in enumerate(layers)]

    # -- flat buffers -------------------------------------------------------------------------
    def _bind(self, flat):
        be, xp = self.be, self.be.xp
        shapes = [(name, layer.param_shapes()) for name, layer in zip(self.names, self.layers)]
        total = sum(math.prod(s) for _, d in shapes for s in d.values())
        # allocated by the backend for arrays read whole every step (NumPy: in huge pages), then filled
        self.flat_params, self.flat_grads = be.zeros((total,)), be.zeros((total,))
        if flat is not None:
            self.flat_params[...] = be.asarray(np.asarray(flat))
        self.ops = kernels.kernel_set(be.name, self.kernel_mode)
        self._slices = {}
        offset = 0
        for (name, layer_shapes), layer in zip(shapes, self.layers):
            params, grads = {}, {}
            for pname, shape in layer_shapes.items():
                size = math.prod(shape)
                params[pname] = xp.reshape(self.flat_params[offset:offset + size], shape)
                grads[pname] = xp.reshape(self.flat_grads[offset:offset + size], shape)
                self._slices[f"{name}.{pname}"] = (offset, shape)
                offset += size
            layer.bind(be, self.ops, params, grads)

    @property
    def num_parameters(self) -> int:
        return int(self.flat_params.shape[0])

    def parameters(self) -> dict:
        """Name -> parameter view (writing into a view changes the model)."""
        return {f"{n}.{p}": v for n, l in zip(self.names, self.layers) for p, v in l.params.items()}

    def gradients(self) -> dict:
        """Name -> gradient view, as written by the last backward pass."""
        return {f"{n}.{p}": v for n, l in zip(self.names, self.layers) for p, v in l.grads.items()}

    def buffers(self) -> dict:
        return {f"{n}.{b}": v for n, l in zip(self.names, self.layers) for b, v in l.buffers.items()}

    def get_parameter(self, name: str) -> ArrayLike:
        """A parameter by name: a view into the flat buffer, in the model's backend.

        Parameters
        ----------
        name : str
            ``"<layer>.<parameter>"``, e.g. ``"dense0.W"`` (see :meth:`parameters`).

        Returns
        -------
        array
            The parameter (``W`` is (in_features, out_features)); writing into it changes the model.
        """
        params = self.parameters()
        if name not in params:
            raise KeyError(f"no parameter {name!r}; the model has {', '.join(params)}")
        return params[name]

    def set_parameter(self, name: str, value: ArrayLike):
        """Assign ``value`` into parameter ``name``.

        Parameters
        ----------
        name : str
            ``"<layer>.<parameter>"``, e.g. ``"dense0.b"``.
        value : array_like
            Any array or nested list of the parameter's shape.
        """
        target = self.get_parameter(name)
        value = self.be.asarray(to_numpy(value))
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"parameter {name!r} has shape {tuple(target.shape)}, got {tuple(value.shape)}")
        target[...] = value

    def load_parameters(self, values: dict, strict: bool = True):
        """Assign parameters (and buffers, such as BatchNorm statistics) by name.

        Parameters
        ----------
        values : dict
            ``{name: array}``, as :meth:`state_dict` returns.
        strict : bool, default True
            Require exactly the model's names; False assigns those given.
        """
        params, bufs = self.parameters(), self.buffers()
        known = set(params) | set(bufs)
        unknown = set(values) - known
        missing = set(params) - set(values)
        if strict and (unknown or missing):
            raise KeyError(f"parameter names do not match: missing {sorted(missing)}, unexpected {sorted(unknown)}")
        for name, value in values.items():
            if name in params:
                self.set_parameter(name, value)
            elif name in bufs:
                bufs[name][...] = self.be.asarray(to_numpy(value))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of every parameter and buffer, by name."""
        return {k: np.array(to_numpy(v)) for k, v in {**self.parameters(), **self.buffers()}.items()}

    # -- backends -----------------------------------------------------------------------------
    def to(self, backend: str | Backend | None = None, device: str | int | None = None,
           dtype: str | None = None) -> Sequential:
        """Move the model (and its optimizer state) to another backend, device or dtype, in place.

        Parameters
        ----------
        backend : str or Backend, optional
            The new backend (default: the current one).
        device : str or int, optional
            The new device.
        dtype : {"float32", "float64"}, optional
            The new dtype.

        Returns
        -------
        Sequential
            The model itself.
        """
        old = self.be
        name = backend if backend is not None else old.name
        new = get_backend(name, device=device if device is not None or backend is not None else old.device,
                          dtype=dtype or old.dtype, seed=old.seed)
        new.set_state(old.state())
        flat = to_numpy(self.flat_params)
        self.be = new
        self._bind(flat)  # layers carry their buffers over through host copies
        if self.optimizer is not None:
            self.optimizer.to(new)
        return self

    def set_kernels(self, mode: str | None):
        """Switch between fused and reference kernels.

        Parameters
        ----------
        mode : {"auto", "numba", "reference"} or None
            The kernels to use; None: the ``MLP_KERNELS`` environment variable, else "auto".
        """
        self.kernel_mode = mode
        self.ops = kernels.kernel_set(self.be.name, mode)
        for layer in self.layers:
            layer.ops = self.ops
        return self

    # -- computation --------------------------------------------------------------------------
    def forward(self, x: ArrayLike, training: bool = False) -> ArrayLike:
        """The model's output (logits for classifiers) for a batch.

        Parameters
        ----------
        x : array
            Inputs, (N, features), in the model's backend.
        training : bool, default False
            Training mode: Dropout drops and BatchNorm uses batch statistics; the layers keep what backward needs.

        Returns
        -------
        array
            (N, outputs) in the model's backend.
        """
        for layer in self.layers:
            x = _step_call(layer, layer.forward, x, training)
        return x

    __call__ = forward

    def backward(self, dy: ArrayLike) -> None:
        """Back-propagate ``dy``; fills the gradient views (see :meth:`gradients`).

        Parameters
        ----------
        dy : array
            The gradient of the loss with respect to the output of the last :meth:`forward` (training mode).

        Returns
        -------
        None
            The input gradient is not computed (see :meth:`backward_to_input`).
        """
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            dy = _step_call(self.layers[i], self.layers[i].backward, dy, i > 0)
        return dy

    def backward_to_input(self, dy: ArrayLike) -> ArrayLike:
        """Like :meth:`backward`, also returning the gradient with respect to the model's input.

        Parameters
        ----------
        dy : array
            The gradient of the loss with respect to the output of the last :meth:`forward`.

        Returns
        -------
        array
            The gradient with respect to the input, (N, features).
        """
        for layer in reversed(self.layers):
            dy = layer.backward(dy, need_input_grad=True)
        return dy

    # -- training (conveniences for mlp_backend.train, which never imports the model classes) ------
    def fit(self, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> History:
        """Train the model; see :func:`mlp_backend.fit` for every option.

        Parameters
        ----------
        X : array_like
            Inputs, (N, features).
        y : array_like
            Targets: class labels, one-hot rows or regression targets.
        **kwargs
            The keyword arguments of :func:`mlp_backend.fit` (``optimizer``, ``epochs``, ``batch_size``, ...).

        Returns
        -------
        History
            What training measured.
        """
        return train.fit(self, X, y, **kwargs)

    def predict(self, X: ArrayLike, batch_size: int = 1024) -> ArrayLike:
        """Class labels (classification) or outputs (regression); see :func:`mlp_backend.predict`.

        Parameters
        ----------
        X : array_like
            Inputs, (N, features).
        batch_size : int, default 1024
            Rows per forward pass.

        Returns
        -------
        array
            NumPy for host input, else ``X``'s library.
        """
        return train.predict(self, X, batch_size=batch_size)

    def predict_proba(self, X: ArrayLike, batch_size: int = 1024) -> ArrayLike:
        """Class probabilities; see :func:`mlp_backend.predict_proba`.

        Parameters
        ----------
        X : array_like
            Inputs, (N, features).
        batch_size : int, default 1024
            Rows per forward pass.

        Returns
        -------
        array
            (N, classes), NumPy for host input, else ``X``'s library.
        """
        return train.predict_proba(self, X, batch_size=batch_size)

    def evaluate(self, X: ArrayLike, y: ArrayLike, batch_size: int = 1024) -> dict:
        """Mean loss and accuracy (or regression scores); see :func:`mlp_backend.evaluate`.

        Parameters
        ----------
        X : array_like
            Inputs, (N, features).
        y : array_like
            Targets.
        batch_size : int, default 1024
            Rows per forward pass.

        Returns
        -------
        dict
            ``loss`` and ``accuracy`` (or ``mse``, ``mae``, ``r2``).
        """
        return train.evaluate(self, X, y, batch_size=batch_size)

    # -- elsewhere (mlp_backend.export) --------------------------------------------------------------
    def to_torch(self) -> Any:
        """This model as a ``torch.nn.Sequential`` with the same weights, in eval mode.

        Returns
        -------
        torch.nn.Sequential
            On the CPU, in the model's dtype.
        """
        from ..export.torch_module import to_torch

        return to_torch(self)

    @classmethod
    def from_torch(cls, module: Any, **kwargs: Any) -> Sequential:
        """A model with the weights (and BatchNorm statistics) of a torch ``nn.Sequential``.

        The module may hold Linear, activation, BatchNorm1d, LayerNorm, Dropout and Softmax modules; an
        activation right after a Linear is fused into its Dense.

        Parameters
        ----------
        module : torch.nn.Sequential
            The module to copy.
        **kwargs
            Passed to :class:`Sequential` (backend, device, seed, kernels; the dtype defaults to the module's).

        Returns
        -------
        Sequential
            The same network with the same weights.
        """
        from ..export.torch_module import config_from_torch

        config, values = config_from_torch(module)
        model = cls.from_config(config, **kwargs)
        model.load_parameters({f"{name}.{k}": v for name, vs in zip(model.names, values) for k, v in vs.items()})
        return model

    def to_onnx(self, path: PathLike, **kwargs: Any) -> Path:
        """Write this model as ONNX (see :func:`mlp_backend.export.to_onnx`).

        Parameters
        ----------
        path : str or Path
            Where to write the ``.onnx`` file.
        **kwargs
            ``scaler``, ``opset``, ``probabilities``: as :func:`~mlp_backend.export.to_onnx`'s.

        Returns
        -------
        Path
            The file written.
        """
        from ..export.onnx_file import to_onnx

        return to_onnx(self, path, **kwargs)

    # -- pickling (scikit-learn and joblib need it; checkpoints use safetensors, never pickle) ----
    def __reduce__(self):
        opt = self.optimizer
        opt_state = None if opt is None else (type(opt).__name__, opt.config(), opt.state_dict())
        return (_restore, (self.config(), self.be.name, self.be.device, self.be.seed, self.be.state(),
                           self.kernel_mode, self.state_dict(), self.loss, opt_state))

    # -- description --------------------------------------------------------------------------
    def config(self) -> dict:
        """The model's architecture and dtype, as JSON values (what checkpoints store).

        Returns
        -------
        dict
            ``{"layers": [...], "dtype": ...}``; :meth:`from_config` rebuilds the model from it.
        """
        return {"layers": [{"type": type(l).__name__, **l.config()} for l in self.layers],
                "dtype": self.be.dtype}

    @classmethod
    def from_config(cls, config: dict, **kwargs: Any) -> Sequential:
        """A new model (freshly initialised) from :meth:`config`'s description.

        Parameters
        ----------
        config : dict
            ``{"layers": [{"type": "Dense", ...}, ...], "dtype": ...}``.
        **kwargs
            Passed to :class:`Sequential` (backend, device, seed, kernels, dtype).

        Returns
        -------
        Sequential
            The model, its parameters drawn anew.
        """
        layers = []
        for spec in config["layers"]:
            spec = dict(spec)
            kind = spec.pop("type")
            if kind not in LAYERS:
                raise ValueError(f"unknown layer type {kind!r} in config")
            layers.append(LAYERS[kind](**spec))
        kwargs.setdefault("dtype", config.get("dtype", "float32"))
        return cls(layers, **kwargs)

    def summary(self) -> str:
        """A table of the layers, their output shapes and parameter counts.

        Returns
        -------
        str
            The table, with the backend, dtype and kernels in its last line.
        """
        rows = [("Layer", "Type", "Output", "Params")]
        features = self.in_features
        for name, layer in zip(self.names, self.layers):
            features = layer.output_features(features)
            count = sum(math.prod(s) for s in layer.param_shapes().values())
            detail = type(layer).__name__
            if isinstance(layer, Dense) and layer.activation != "identity":
                detail += f"({layer.activation})"
            rows.append((name, detail, f"(N, {features})", f"{count:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "  ".join("-" * w for w in widths)
        text = [("  ".join(c.ljust(w) for c, w in zip(r, widths))) for r in rows]
        text.insert(1, line)
        text += [line, f"Total parameters: {self.num_parameters:,}  ({self.be.name}, {self.be.dtype}, "
                       f"kernels: {self.ops.used})"]
        return "\n".join(text)

    def __repr__(self):
        return f"Sequential({len(self.layers)} layers, {self.num_parameters:,} parameters, backend={self.be.name!r})"


def _restore(config, backend, device, seed, rng_state, kernel_mode, state, loss, opt_state):
    from ..optim import Optimizer

    model = Sequential.from_config(config, backend=backend, device=device, seed=seed, kernels=kernel_mode)
    model.be.set_state(rng_state)
    model.load_parameters(state)
    model.loss = loss
    if opt_state is not None:
        name, cfg, values = opt_state
        model.optimizer = Optimizer.rebuild(name, cfg, values, model.be, model.flat_params)
    return model


def _step_call(layer: Layer, method: Callable, *args):
    """``method(*args)``, a layer's forward or backward; in a step that may be replayed as its calls, a layer that plans
    nothing is one host call (``Workspace.host``)."""
    ws = layer.workspace
    if ws is None or not ws.hosts_calls or layer.plans_its_step:
        return method(*args)
    return ws.host(layer, method.__name__, lambda: method(*args))


def build_mlp(sizes: Sequence[int], activation: str = "relu", *, alpha: float | None = None,
              output_activation: str | None = None, dropout: float = 0.0, batch_norm: bool = False,
              init: str | Callable = "auto", bias_init: str | Callable = "zeros", **kwargs: Any) -> Sequential:
    """The common case: ``build_mlp([784, 500, 250, 100, 10], "relu")``.

    Hidden layers are Dense with the activation fused in, optionally followed by BatchNorm1d and Dropout; the
    last layer outputs logits (or ``output_activation``).

    Parameters
    ----------
    sizes : sequence of int
        Input size, hidden sizes, output size.
    activation : str, default "relu"
        The hidden layers' activation, any of the activation table (``"relu"``, ``"leaky_relu"``, ``"elu"``,
        ``"selu"``, ``"gelu"``, ``"sigmoid"``, ``"tanh"``, ``"identity"``).
    alpha : float, optional
        The activation's parameter (leaky_relu's slope, elu's alpha); default: the table's.
    output_activation : str, optional
        An activation for the last layer (default: none, logits).
    dropout : float, default 0.0
        Dropout rate after each hidden layer (0: no Dropout layers).
    batch_norm : bool, default False
        BatchNorm1d after each hidden layer.
    init : str or callable, default "auto"
        The weight initialiser: ``"auto"`` (the activation table's choice: He for ReLU-like, LeCun for SELU,
        else Glorot), ``"glorot_uniform"``, ``"glorot_normal"``, ``"he_uniform"``, ``"he_normal"``,
        ``"lecun_normal"``, ``"uniform:SCALE"``, ``"normal:STD"``, ``"zeros"`` or a function
        ``init(backend, shape, fan_in, fan_out)``.
    bias_init : str or callable, default "zeros"
        The bias initialiser, as ``init``.
    **kwargs
        Passed to :class:`Sequential`: ``backend``, ``device``, ``dtype``, ``seed``, ``kernels``.

    Returns
    -------
    Sequential
        The model, initialised.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least input and output sizes, got {sizes}")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        act = output_activation if last else activation
        layers.append(Dense(n_in, n_out, activation=act, alpha=None if last else alpha, init=init,
                            bias_init=bias_init))
        if not last and batch_norm:
            layers.append(BatchNorm1d(n_out))
        if not last and dropout:
            layers.append(Dropout(dropout))
    return Sequential(layers, **kwargs)
