"""chainrule: neural networks from scratch in NumPy, where every gradient is checked.

>>> import chainrule as cr
>>> net = cr.Network.from_sizes([2, 3, 3, 2], activation="sigmoid",
...                             output_activation="sigmoid", optimizer=cr.SGD(lr=0.1), seed=0)
>>> loss = net.train_step([0.2, 0.3], [0.3, 0.67])
"""

from . import datasets, diagnostics, initializers
from ._version import __version__
from .activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .augmentation import random_shift
from .diagnostics import HealthCheck, TrainingHealthWarning
from .errors import (
    CheckpointInUseError,
    InsufficientMemoryError,
    ModelFileError,
    NonFiniteLossError,
    UnverifiedFileWarning,
)
from .gradcheck import GradientReport, check_gradients
from .io import load
from .layers import (
    AvgPool2D,
    BatchNorm1d,
    BatchNorm2d,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
)
from .losses import BinaryCrossEntropy, CrossEntropy, Loss, MeanSquaredError, SquaredError
from .network import Network
from .optimizers import SGD, Adam, Optimizer
from .training import (
    Callback,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ProgressBar,
    cosine_schedule,
    train_validation_split,
)

__all__ = [
    "__version__",
    "Network",
    "Layer",
    "Dense",
    "Dropout",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "BatchNorm1d",
    "BatchNorm2d",
    "Flatten",
    "Identity",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "Loss",
    "SquaredError",
    "MeanSquaredError",
    "CrossEntropy",
    "BinaryCrossEntropy",
    "Optimizer",
    "SGD",
    "Adam",
    "datasets",
    "diagnostics",
    "HealthCheck",
    "TrainingHealthWarning",
    "initializers",
    "check_gradients",
    "GradientReport",
    "load",
    "History",
    "Callback",
    "EarlyStopping",
    "ProgressBar",
    "LearningRateScheduler",
    "cosine_schedule",
    "train_validation_split",
    "random_shift",
    "ModelFileError",
    "NonFiniteLossError",
    "CheckpointInUseError",
    "InsufficientMemoryError",
    "UnverifiedFileWarning",
]
