from .activations import ELU, SELU, Activation, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .norm import BatchNorm1d, LayerNorm
from .sequential import LAYERS, Sequential, build_mlp

__all__ = ["Layer", "Dense", "Activation", "ReLU", "LeakyReLU", "ELU", "SELU", "Sigmoid", "Tanh", "Identity",
           "Softmax", "Dropout", "BatchNorm1d", "LayerNorm", "Sequential", "build_mlp", "LAYERS"]
