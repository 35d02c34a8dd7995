"""Layers, one file per family as in ``torch/nn/modules``.

``base`` holds the ``Layer`` interface and the registry that rebuilds saved
layers; ``dense`` the fully connected layer; ``dropout`` inverted dropout.
"""

from .base import _REGISTRY, Layer, layer_from_config
from .dense import Dense
from .dropout import Dropout

__all__ = ["Layer", "Dense", "Dropout", "layer_from_config", "_REGISTRY"]
