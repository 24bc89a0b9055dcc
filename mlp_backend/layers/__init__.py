from .activations import ACTIVATION_LAYERS, Activation, Softmax
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .norm import BatchNorm1d, LayerNorm
from .sequential import LAYERS, Sequential, build_mlp

globals().update(ACTIVATION_LAYERS)  # ReLU, LeakyReLU, ..., one per entry of the activation table

__all__ = ["Layer", "Dense", "Activation", *ACTIVATION_LAYERS, "Softmax", "Dropout", "BatchNorm1d", "LayerNorm",
           "Sequential", "build_mlp", "LAYERS", "ACTIVATION_LAYERS"]
