from .optimizers import (OPTIMIZERS, SGD, Adagrad, Adam, AdamW, Lion, Momentum, Nesterov, Optimizer, RMSProp,
                         get_optimizer)
from .schedules import SCHEDULES, CosineDecay, ExponentialDecay, Schedule, StepDecay

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "RMSProp", "Adagrad", "Adam", "AdamW", "Lion", "OPTIMIZERS",
           "get_optimizer", "Schedule", "StepDecay", "ExponentialDecay", "CosineDecay", "SCHEDULES"]
