"""mlp-backend: multi-layer perceptrons written once against the Python Array API.

Importing this package imports neither CuPy, torch nor numba.cuda: backends and kernels load on use.
"""
from typing import Any

from . import threads

threads.prepare()  # before NumPy loads: how OpenBLAS's threads wait (see threads.py); the imports below follow it

from .backend import BACKENDS, Backend, available_backends, get_backend, to_numpy
from .checkpoint import CheckpointError
from .restore import load as load_checkpoint
from .checkpoint import save as save_checkpoint
from .gradcheck import check_layer_gradients, check_loss_gradients, check_model_gradients
from .layers import (ACTIVATION_LAYERS, LAYERS, Activation, BatchNorm1d, Dense, Dropout, LayerNorm, Sequential, Softmax,
                     build_mlp)
from .losses import (L1, L2, LOSSES, BinaryCrossEntropy, MeanSquaredError, SoftmaxCrossEntropy,
                     SoftmaxMeanSquaredError, get_loss)
from .metrics import accuracy, classification_report, confusion_matrix, regression_scores
from .optim import (SGD, Adagrad, Adam, AdamW, CosineDecay, ExponentialDecay, Lion, Momentum, Nesterov, RMSProp,
                    StepDecay, get_optimizer)
from .train import (Callback, DivergenceWarning, EarlyStopping, History, LambdaCallback, ProgressBar,
                    ReduceLROnPlateau, evaluate, fit, predict, predict_proba)



def tune(**options: Any) -> dict:
    """Hyper-parameter search with Optuna, as ``mlp tune`` (imported on use: importing the package loads no command).

    Parameters
    ----------
    **options
        ``mlp tune``'s options as keywords, underscores for dashes (see the command-line reference):
        ``dataset="digits"``, ``trials=20``, ``epochs=10``, ``seed=0``, ``storage="sqlite:///study.db"``,
        ``lr_range="1e-4,1e-1"``, ``optimizers="adam,sgd"``, ``executor="dask"``, ``out="study"``, ...

    Returns
    -------
    dict
        The best parameters and value, the trials, and the best run's summary.
    """
    from .commands.tune import tune as search

    return search(**options)


globals().update(ACTIVATION_LAYERS)  # ReLU, LeakyReLU, ELU, ...: one per entry of the activation table

__version__ = "0.1.0"
