"""Layers, one file per family as in ``torch/nn/modules``.

``base`` holds the ``Layer`` interface and the registry that rebuilds saved
layers; ``dense`` the fully connected layer; ``dropout`` inverted dropout;
``conv`` 2-D convolution; ``pooling`` max and average pooling;
``normalization`` batch normalisation; ``reshape`` ``Flatten``.
"""

from .base import _REGISTRY, Layer, layer_from_config
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2D, MaxPool2D
from .reshape import Flatten

__all__ = [
    "Layer",
    "Dense",
    "Dropout",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "BatchNorm1d",
    "BatchNorm2d",
    "Flatten",
    "layer_from_config",
    "_REGISTRY",
]
