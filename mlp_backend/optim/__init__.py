from .optimizers import OPTIMIZERS, SGD, Adam, AdamW, Momentum, Nesterov, Optimizer, RMSProp, get_optimizer
from .schedules import SCHEDULES, CosineDecay, ExponentialDecay, Schedule, StepDecay

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "RMSProp", "Adam", "AdamW", "OPTIMIZERS", "get_optimizer",
           "Schedule", "StepDecay", "ExponentialDecay", "CosineDecay", "SCHEDULES"]
