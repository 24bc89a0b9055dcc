"""A model as a ``torch.nn.Sequential`` with the same weights, and a torch Sequential of the same kinds of
layers as a model's configuration and values (``Sequential.from_torch`` builds the model from them).

Dense is ``nn.Linear`` (its weight is our ``W`` transposed: torch stores (out, in)) followed by the activation
module; activations are the ``torch.nn`` classes of the same names (GELU with ``approximate="tanh"``);
BatchNorm1d, LayerNorm, Dropout and Softmax map one to one, BatchNorm1d with its running statistics.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..kernels import activations as table
from .onnx_graph import builtin_kind

if TYPE_CHECKING:
    from ..layers import Sequential

_BY_TORCH_NAME = {act.layer: act for act in table.TABLE.values()}  # torch.nn's class names are the table's


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"to_torch/from_torch need torch: pip install 'mlp-backend[torch]' ({e})") from None
    return torch


def _activation_module(nn, name: str, alpha: float):
    act = table.get(name)
    kwargs = dict(act.torch_kwargs)
    if act.alpha is not None:
        kwargs[act.alpha_name] = alpha
    return getattr(nn, act.layer)(**kwargs)


def to_torch(model: Sequential) -> Any:
    """``model`` as a ``torch.nn.Sequential`` on the CPU, in ``model``'s dtype, in eval mode.

    Parameters
    ----------
    model : Sequential
        The model to convert.

    Returns
    -------
    torch.nn.Sequential
        Linear, activation, BatchNorm1d, LayerNorm, Dropout and Softmax modules with the same weights.
    """
    torch = _torch()
    nn = torch.nn
    dtype = getattr(torch, model.be.dtype)
    state = model.state_dict()
    modules = []

    def tensor(key):
        return torch.from_numpy(np.array(state[key]))

    activations = {"Activation", *_BY_TORCH_NAME}
    for name, layer in zip(model.names, model.layers):
        kind = builtin_kind(layer)
        if kind == "Dense":
            linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.use_bias, dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(tensor(f"{name}.W").T)
                if layer.use_bias:
                    linear.bias.copy_(tensor(f"{name}.b"))
            modules.append(linear)
            if layer.activation != "identity":
                modules.append(_activation_module(nn, layer.activation, layer.alpha))
        elif kind in activations:
            modules.append(_activation_module(nn, layer.activation, layer.alpha))
        elif kind in ("BatchNorm1d", "LayerNorm"):
            norm = (nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum, dtype=dtype)
                    if kind == "BatchNorm1d" else nn.LayerNorm(layer.num_features, eps=layer.eps, dtype=dtype))
            with torch.no_grad():
                norm.weight.copy_(tensor(f"{name}.gamma"))
                norm.bias.copy_(tensor(f"{name}.beta"))
                if kind == "BatchNorm1d":
                    norm.running_mean.copy_(tensor(f"{name}.running_mean"))
                    norm.running_var.copy_(tensor(f"{name}.running_var"))
            modules.append(norm)
        elif kind == "Dropout":
            modules.append(nn.Dropout(layer.rate))
        elif kind == "Softmax":
            modules.append(nn.Softmax(dim=-1))
        else:
            raise ValueError(f"cannot convert layer {name} ({type(layer).__name__}) to torch")
    return nn.Sequential(*modules).eval()


def _flat_modules(module, nn):
    if isinstance(module, nn.Sequential):
        return [m for child in module for m in _flat_modules(child, nn)]
    return [module]


def _layer_of(module, nn) -> dict:
    """Our layer's configuration for one torch module (a Linear's activation is fused in by the caller)."""
    kind = type(module).__name__
    if isinstance(module, nn.Linear):
        return {"type": "Dense", "in_features": module.in_features, "out_features": module.out_features,
                "use_bias": module.bias is not None}
    if kind in _BY_TORCH_NAME and type(module) is getattr(nn, kind):
        act = _BY_TORCH_NAME[kind]
        for key, value in act.torch_kwargs:
            if getattr(module, key) != value:
                raise ValueError(f"torch {kind}({key}={getattr(module, key)!r}) has no counterpart here: "
                                 f"{act.layer} is {key}={value!r} only")
        alpha = float(getattr(module, act.alpha_name)) if act.alpha is not None else None
        return {"type": act.layer, "activation": act.name, "alpha": alpha}
    if isinstance(module, nn.BatchNorm1d):
        if not (module.affine and module.track_running_stats) or module.momentum is None:
            raise ValueError("torch BatchNorm1d needs affine=True, track_running_stats=True and a momentum")
        return {"type": "BatchNorm1d", "num_features": module.num_features, "eps": module.eps,
                "momentum": module.momentum}
    if isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) != 1 or not module.elementwise_affine or module.bias is None:
            raise ValueError("torch LayerNorm needs one normalized dimension and elementwise_affine with a bias")
        return {"type": "LayerNorm", "num_features": module.normalized_shape[0], "eps": module.eps}
    if isinstance(module, nn.Dropout):
        return {"type": "Dropout", "rate": module.p}
    if isinstance(module, nn.Softmax) and module.dim in (-1, 1):
        return {"type": "Softmax"}
    raise ValueError(f"cannot convert torch module {module!r}: Linear, the activations "
                     f"({', '.join(_BY_TORCH_NAME)}), BatchNorm1d, LayerNorm, Dropout and Softmax(dim=-1) can")


def _values(module, nn) -> dict:
    import torch

    if isinstance(module, nn.Linear):
        values = {"W": module.weight.detach().T}
        if module.bias is not None:
            values["b"] = module.bias.detach()
    elif isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
        values = {"gamma": module.weight.detach(), "beta": module.bias.detach()}
        if isinstance(module, nn.BatchNorm1d):
            values.update(running_mean=module.running_mean, running_var=module.running_var)
    else:
        values = {}
    return {k: v.to(device="cpu", dtype=torch.float64).numpy() for k, v in values.items()}


def config_from_torch(module) -> tuple[dict, list[dict]]:
    """``(config, values)`` of a torch ``nn.Sequential``: the configuration ``Sequential.from_config`` takes
    (an activation right after a Linear fused into its Dense; the dtype the module's) and each layer's
    parameter and buffer values by name, as float64 host arrays."""
    torch = _torch()
    nn = torch.nn
    modules = _flat_modules(module, nn)
    if not modules:
        raise ValueError("from_torch needs a Sequential with at least one module")
    specs, values = [], []
    for m in modules:
        spec = _layer_of(m, nn)
        previous = specs[-1] if specs else {}
        activation, alpha = spec.pop("activation", None), spec.pop("alpha", None)
        if activation is not None and previous.get("type") == "Dense" and "activation" not in previous:
            previous.update(activation=activation, alpha=alpha)
            continue
        if activation is not None and alpha is not None:
            spec[table.get(activation).alpha_name] = alpha
        specs.append(spec)
        values.append(_values(m, nn))
    params = next(iter(module.parameters()), None)
    dtype = "float64" if params is not None and params.dtype == torch.float64 else "float32"
    return {"layers": specs, "dtype": dtype}, values
