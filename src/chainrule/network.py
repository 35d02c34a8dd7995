"""The one model class: a sequence of layers, a loss and an optimizer."""

from __future__ import annotations

import math
import operator
import weakref
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np

from . import kernels
from .activations import get_activation
from .errors import NonFiniteLossError
from .initializers import Initializer, default_initializer
from .layers import AvgPool2D, BatchNorm2d, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D
from .losses import Loss, get_loss
from .optimizers import SGD, Optimizer, get_optimizer
from .parallel import threaded_matmul
from .resources import check_mlp_memory
from .threads import PREDICT_ROWS, predict_policy

__all__ = ["Network", "check_tensors"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Layers that take images (n, C, H, W); a network starting with one takes images.
_IMAGE_LAYERS = (Conv2D, MaxPool2D, AvgPool2D, BatchNorm2d)
# Layers that change the shape of what they are given.
_SHAPE_LAYERS = (Conv2D, MaxPool2D, AvgPool2D, Flatten)


class Network:
    """A feed-forward network: ``forward`` runs the layers in order, ``backward`` in reverse.

    Parameters
    ----------
    layers : sequence of Layer
        For example ``[Dense(784, 128), ReLU(), Dense(128, 10)]``, or for
        images ``[Conv2D(1, 8, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(1352, 10)]``.
    loss : Loss or str
        ``SquaredError()`` (the default, the tutorials' error), ``CrossEntropy()``, ...
    optimizer : Optimizer or str
        ``SGD(lr=0.1)`` (the default is ``SGD(lr=0.01)``), ``Adam()``, ...
    dtype : "float32" or "float64"
        Parameters, activations and gradients all stay in this dtype.

    Parameter names follow a PyTorch ``nn.Sequential`` state dict: the weight
    of ``layers[2]`` is ``"2.weight"``.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        loss: Loss | str = "squared_error",
        optimizer: Optimizer | str | None = None,
        dtype: str | np.dtype = "float32",
    ) -> None:
        self.layers: list[Layer] = list(layers)
        if not self.layers:
            raise ValueError("a Network needs at least one layer")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] is {layer!r}, not a chainrule Layer")
            if any(layer is other for other in self.layers[:i]):
                raise ValueError(f"layers[{i}] appears twice; each position needs its own layer")
            layer.name = f"layer {i} ({layer!r})"
        self._check_widths()
        self.loss = loss
        self.optimizer = optimizer if optimizer is not None else SGD(lr=0.01)
        self.dtype = np.dtype(dtype)
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        for layer in self.layers:
            layer.astype(self.dtype)
        #: Training mode (dropout active) for ``forward``; ``train()`` / ``eval()`` set it.
        self.training = True
        #: Set by a callback (e.g. EarlyStopping) to end ``fit`` after the current epoch.
        self.stop_training = False

    @classmethod
    def from_sizes(
        cls,
        sizes: Sequence[int],
        activation: str | Layer = "relu",
        output_activation: str | Layer | None = None,
        loss: Loss | str = "squared_error",
        optimizer: Optimizer | str | None = None,
        init: str | Initializer | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        seed: int | None = None,
        dtype: str | np.dtype = "float32",
    ) -> Network:
        """Build a network from its layer sizes, the tutorials' ``[2, 3, 3, 2]``.

        ``sizes[0]`` is the input width and ``sizes[-1]`` the output width;
        every hidden ``Dense`` is followed by ``activation`` (and by
        ``Dropout(dropout)`` when ``dropout > 0``), the last by
        ``output_activation`` if one is given. ``init`` defaults to He for
        relu-family activations and Glorot otherwise.

        Before allocating anything, the memory the network needs (parameters,
        gradients, optimizer state, one batch of 32's activations) is compared
        with what is available (``chainrule.resources``); too much raises
        ``InsufficientMemoryError`` (a ``MemoryError`` and a ``ValueError``)
        stating both.
        """
        sizes = [operator.index(s) for s in sizes]  # 2.5 is an error, not 2
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes needs at least two positive widths, got {sizes}")
        # Refuse (InsufficientMemoryError) before allocating what cannot fit.
        check_mlp_memory(sizes, optimizer=optimizer, dtype=dtype, bias=bias, dropout=bool(dropout))
        rng = np.random.default_rng(seed)
        get_activation(activation)  # an unknown name is an error even for a single layer
        act_name = activation if isinstance(activation, str) else type(activation).__name__
        act_name = {"ReLU": "relu", "LeakyReLU": "leaky_relu"}.get(act_name, act_name)
        weight_init = init if init is not None else default_initializer(act_name)
        layers: list[Layer] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Dense(n_in, n_out, bias=bias, init=weight_init, rng=rng, dtype=dtype))
            last = i == len(sizes) - 2
            act = get_activation(output_activation if last else activation)
            if act is not None:
                layers.append(act)
            if dropout and not last:
                layers.append(Dropout(dropout, rng=np.random.default_rng(rng.integers(2**63))))
        return cls(layers, loss=loss, optimizer=optimizer, dtype=dtype)

    @property
    def loss(self) -> Loss:
        """The loss; setting it checks that the output layer suits it."""
        return self._loss

    @loss.setter
    def loss(self, loss: Loss | str) -> None:
        loss = get_loss(loss)
        _check_output_for_loss(self.layers[-1], loss, self.out_features)
        self._loss = loss

    @property
    def optimizer(self) -> Optimizer:
        """The optimizer; its per-parameter state belongs to this network's weights."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: Optimizer | str) -> None:
        optimizer = get_optimizer(optimizer)
        owner = optimizer._network() if optimizer._network is not None else None
        if owner is not None and owner is not self:
            raise ValueError(
                f"{optimizer!r} already trains another network, and its state (momentum, "
                "moments) belongs to that network's weights; give each network its own "
                "optimizer"
            )
        if owner is None and optimizer._network is not None:
            optimizer.reset()  # its network is gone: that state is meaningless here
        optimizer._network = weakref.ref(self)
        self._optimizer = optimizer

    def __setstate__(self, state: dict[str, Any]) -> None:
        # An unpickled or deep-copied network gets its own optimizer copy, whose weak
        # reference back (not pickled, see Optimizer.__getstate__) is relinked here.
        self.__dict__.update(state)
        optimizer = self.__dict__.get("_optimizer")
        if optimizer is not None and (optimizer._network is None or optimizer._network() is None):
            optimizer._network = weakref.ref(self)

    # -- the math ---------------------------------------------------------------

    def forward(self, x: np.ndarray, training: bool | None = None) -> np.ndarray:
        """Run ``x`` through every layer: one sample ``(features,)`` or a batch ``(n, features)``;
        for a network that ``takes_images``, one image ``(C, H, W)`` or a batch ``(n, C, H, W)``.

        ``training`` (dropout active) defaults to ``self.training``, which
        ``train()`` and ``eval()`` set, as in PyTorch. Each layer caches what
        ``backward`` needs; ``predict`` is the cache-free, thread-safe way to infer.
        """
        if training is None:
            training = self.training
        x = self._as_input(x)
        # Layers work on batches: one image (C, H, W) goes through as a batch of one.
        self._one_image = x.ndim == 3
        if self._one_image:
            x = x[None]
        for layer in self.layers:
            x = layer.forward(x, training)
        return x[0] if self._one_image else x

    def __call__(self, x: np.ndarray, training: bool | None = None) -> np.ndarray:
        """``net(x)`` is ``net.forward(x)``, as a ``torch.nn.Module`` call is."""
        return self.forward(x, training)

    def train(self, mode: bool = True) -> Network:
        """Set training mode (``forward`` runs dropout); returns ``self``, as ``torch.nn.Module.train``."""
        self.training = bool(mode)
        return self

    def eval(self) -> Network:
        """Set inference mode (``forward`` runs no dropout); returns ``self``, as in PyTorch."""
        return self.train(False)

    def backward(self, grad_output: np.ndarray | None = None) -> np.ndarray:
        """Backpropagate ``dL/doutput`` (by default the loss's) through every layer.

        Fills each layer's ``grads`` and returns ``dL/dinput``.
        """
        grad = self.loss.backward() if grad_output is None else grad_output
        one_image = getattr(self, "_one_image", False)
        if one_image:
            grad = np.asarray(grad)[None]
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad[0] if one_image else grad

    def train_step(
        self, x: np.ndarray, y: Any, sample_weight: Any = None, class_weight: Any = None
    ) -> float:
        """One optimizer step on ``(x, y)`` in training mode; returns the loss before the step.

        ``sample_weight`` (n,) and ``class_weight`` weight the loss as
        described in ``chainrule.losses``. If the loss is NaN or infinite the
        step is not applied and ``NonFiniteLossError`` is raised, so the
        weights stay finite.
        """
        if sample_weight is None and class_weight is None and self._kernel_path():
            return kernels.train_step(self, x, y)  # the same step with fused elementwise work
        with threaded_matmul:  # large products of this step run on two cores
            loss = self.loss.forward(self.forward(x, training=True), y,
                                     sample_weight=sample_weight, class_weight=class_weight)
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"the loss is {loss}; the weights were left as they were"
                )
            # self.backward(), except that nothing needs dL/dx of the first layer
            layers = self.layers
            grad = self.loss.backward()
            if self._one_image:
                grad = grad[None]
            for layer in layers[:0:-1]:
                grad = layer.backward(grad)
            layers[0].backward_params(grad)
        params = [p for layer in layers for p in layer.params.values()]
        grads = [g for layer in layers for g in layer.grads.values()]
        self.optimizer.step(params, grads)
        return loss

    def _train_step_checked(self, x: np.ndarray, y: np.ndarray) -> float:
        """``train_step(x, y)`` for targets that already passed ``loss.check_targets`` as a whole.

        ``fit`` validates every target once before the first epoch; checking
        each batch again costs 5-20 us a step, a third of a one-sample step on
        a small network. Only the kernel path skips it (the NumPy path stays
        the reference and checks as always).
        """
        if self._kernel_path():
            return kernels.train_step(self, x, y, checked=True)
        return self.train_step(x, y)

    def _kernel_path(self) -> bool:
        """Whether a step runs the fused kernels: numba is on, and no HealthCheck reads the
        layers' caches (``keep_caches``), which the NumPy path writes as it goes."""
        return kernels.enabled() and not getattr(self, "keep_caches", False)

    # -- inference ------------------------------------------------------------

    def predict(
        self, x: np.ndarray, batch_size: int | None = None, threads: int | str | None = "auto"
    ) -> np.ndarray:
        """The network's output for ``x`` in inference mode (dropout off), whatever ``self.training``.

        Writes nothing on the network or its layers, so several threads may
        call it on one model at once (a web server does). ``threads``: BLAS
        threads for large inputs, as in ``fit`` (``chainrule.threads``).
        """
        x = self._as_input(x)
        if x.ndim == 3:  # one image (C, H, W), through the layers as a batch of one
            return self._infer(x[None])[0]
        policy = predict_policy(threads, self, len(x)) if x.ndim != 1 else None
        if policy is not None:
            return policy.map(self._infer, x, batch_size or PREDICT_ROWS)
        if batch_size is None or x.ndim == 1 or len(x) == 0:
            return self._infer(x)
        return np.concatenate(
            [self._infer(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )

    def predict_proba(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Probabilities for ``x``, by the link that matches this network's loss and output layer.

        - the last layer (past any ``Dropout``/``Identity``) is ``Softmax`` or
          ``Sigmoid``: its outputs are probabilities already and are returned
          as they are (e.g. the tutorials' sigmoid outputs trained with
          squared error: each output is that class's own probability);
        - ``CrossEntropy`` on logits: ``softmax`` of the outputs (rows sum to 1);
        - ``BinaryCrossEntropy`` on logits: ``sigmoid`` of each output.

        Shaped like ``predict(x)``. Raises ``ValueError`` for any other network
        (squared error without a sigmoid or softmax output is a regression:
        its outputs are not probabilities; use ``predict``).
        """
        if self._probability_link() is None:  # refused before any inference
            raise self._not_probabilities()
        return self._link_outputs(self.predict(x, batch_size=batch_size))

    def _not_probabilities(self) -> ValueError:
        return ValueError(
            f"this network's outputs are not probabilities: it ends in "
            f"{self._output_layer()!r} and is trained with {self.loss!r}, a regression. "
            f"Use predict(); for class probabilities train with loss=\"cross_entropy\" "
            f"(or end the network in a softmax or sigmoid)"
        )

    def _link_outputs(self, out: np.ndarray) -> np.ndarray:
        """``predict_proba`` from outputs ``predict`` already gave (one inference, not two)."""
        from .activations import sigmoid, softmax

        link = self._probability_link()
        if link is None:
            raise self._not_probabilities()
        if link == "softmax":
            return softmax(out)
        if link == "sigmoid":
            return sigmoid(out)
        return out

    def _output_layer(self) -> Layer:
        """The last layer that changes values in inference (Dropout and Identity do not)."""
        from .activations import Identity

        for layer in reversed(self.layers):
            if not isinstance(layer, (Dropout, Identity)):
                return layer
        return self.layers[-1]

    def _probability_link(self) -> str | None:
        """``"softmax"`` or ``"sigmoid"`` to apply to outputs, ``"outputs"`` when they are probabilities, else None."""
        from .activations import Sigmoid, Softmax
        from .losses import BinaryCrossEntropy, CrossEntropy

        if isinstance(self._output_layer(), (Softmax, Sigmoid)):
            return "outputs"
        if isinstance(self.loss, CrossEntropy):
            return "softmax"
        if isinstance(self.loss, BinaryCrossEntropy):
            return "sigmoid"
        return None

    def _infer(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, False, cache=False)
        return x

    def evaluate(
        self,
        x: np.ndarray,
        y: Any,
        batch_size: int | None = None,
        sample_weight: Any = None,
        class_weight: Any = None,
    ) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` on ``(x, y)`` in inference mode.

        The targets are checked as ``fit`` checks them (``Loss.check_targets``).
        ``sample_weight`` and ``class_weight`` weight the loss as in ``fit``
        (see ``chainrule.losses``; ``"balanced"`` counts the classes of ``y``);
        ``accuracy``, present for classification losses only, is weighted by
        ``sample_weight`` (scikit-learn's ``score``), not by class weights.
        Writes nothing shared: safe from several threads.
        """
        pred = self.predict(x, batch_size=batch_size)
        if pred.ndim == 2 and len(pred) == 0:
            raise ValueError("cannot evaluate on 0 samples")
        y = self.loss.check_targets(pred.shape, y, pred.dtype)
        result = {"loss": self.loss.forward(pred, y, sample_weight=sample_weight,
                                            class_weight=class_weight, cache=False)}
        accuracy = self.loss.accuracy(pred, y, sample_weight=sample_weight)
        if accuracy is not None:
            result["accuracy"] = accuracy
        return result

    # -- training loop (in training.py) ------------------------------------------

    def fit(self, x: np.ndarray, y: Any, epochs: int = 1, batch_size: int = 32, **kwargs: Any):
        """Train for ``epochs`` passes over ``(x, y)``; see ``chainrule.training.fit``."""
        from .training import fit

        return fit(self, x, y, epochs=epochs, batch_size=batch_size, **kwargs)

    # -- parameters --------------------------------------------------------------

    def parameters(self) -> dict[str, np.ndarray]:
        """Every trainable array by PyTorch state-dict name (``"0.weight"``), live, not copies."""
        return {
            f"{i}.{name}": array
            for i, layer in enumerate(self.layers)
            for name, array in layer.params.items()
        }

    def gradients(self) -> dict[str, np.ndarray]:
        """``dL/dparameter`` from the last ``backward``, by the same names as ``parameters``.

        These are the layers' own buffers, refilled by every ``backward``:
        copy them to keep a step's gradients.
        """
        return {
            f"{i}.{name}": array
            for i, layer in enumerate(self.layers)
            for name, array in layer.grads.items()
        }

    def buffers(self) -> dict[str, np.ndarray]:
        """Every non-trainable saved array (BatchNorm's ``"1.running_mean"``...), live, by state-dict name."""
        return {
            f"{i}.{name}": array
            for i, layer in enumerate(self.layers)
            for name, array in layer.buffers().items()
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by name, in PyTorch's order (each layer's parameters, then
        its buffers): what ``torch.nn.Sequential.state_dict()`` holds for the same network."""
        return {
            f"{i}.{name}": array
            for i, layer in enumerate(self.layers)
            for name, array in (*layer.params.items(), *layer.buffers().items())
        }

    def load_parameters(self, tensors: dict[str, np.ndarray]) -> None:
        """Copy ``tensors`` (a state dict: parameters and buffers) into the network.

        Every parameter and buffer must be present with its exact shape, and
        nothing else; an integer buffer (``num_batches_tracked``) needs an
        integer tensor. Errors name the offending tensor.
        """
        own = self.state_dict()
        check_tensors({name: array.shape for name, array in own.items()}, tensors)
        for name, array in own.items():
            value = np.asarray(tensors[name])
            if np.issubdtype(array.dtype, np.integer) and not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"tensor {name!r} has dtype {value.dtype}, expected an integer")
            if np.issubdtype(array.dtype, np.integer) and np.any(value < 0):
                raise ValueError(f"tensor {name!r} must not be negative")
            array[...] = value

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """PyTorch's name for ``load_parameters``: ``net.load_state_dict(other.state_dict())``.

        Takes NumPy arrays or anything ``np.asarray`` reads (torch CPU tensors
        included); the same checks as ``load_parameters``.
        """
        self.load_parameters({name: np.asarray(value) for name, value in state_dict.items()})

    def astype(self, dtype: str | np.dtype) -> Network:
        """Switch the whole network (parameters, and so every activation) to ``dtype``, in place."""
        dtype = np.dtype(dtype)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        for layer in self.layers:
            layer.astype(dtype)
        for state in self.optimizer.state:
            for key, value in state.items():
                state[key] = value.astype(dtype, copy=False)  # the same array if already dtype
        self.dtype = dtype
        return self

    @property
    def in_features(self) -> int | None:
        """Width of the input, from the first layer that fixes it (``None`` for images)."""
        for layer in self.layers:
            if hasattr(layer, "in_features"):
                return layer.in_features
            if isinstance(layer, _SHAPE_LAYERS + _IMAGE_LAYERS):
                return None  # the network takes images: no fixed width
        return None

    @property
    def out_features(self) -> int | None:
        """Width of the output (``None`` if no layer fixes it)."""
        # Widths are known from the first Dense after the last image-shaped layer.
        start = 1 + max((i for i, layer in enumerate(self.layers)
                         if isinstance(layer, _SHAPE_LAYERS + _IMAGE_LAYERS)), default=-1)
        width = None
        for layer in self.layers[start:]:
            if width is None:
                width = getattr(layer, "in_features", None)
            if width is not None:
                width = layer.output_features(width)
        return width

    @property
    def takes_images(self) -> bool:
        """Whether the input is images ``(n, C, H, W)`` (the first shape-fixing layer is a
        ``Conv2D``, a pooling layer or ``BatchNorm2d``) rather than rows ``(n, features)``."""
        for layer in self.layers:
            if isinstance(layer, _IMAGE_LAYERS):
                return True
            if hasattr(layer, "in_features") or isinstance(layer, Flatten):
                return False
        return False

    def save(self, path: str | PathLike) -> None:
        """Write the model to a ``.safetensors`` file; see ``chainrule.io.save``."""
        from .io import save

        save(self, path)

    def to_onnx(self, path: str | PathLike | None = None, **kwargs: Any) -> Any:
        """Export the inference graph to ONNX (returns the ``onnx.ModelProto``).

        See ``chainrule.export.to_onnx``.
        """
        from .export import to_onnx

        return to_onnx(self, path, **kwargs)

    def summary(self, input_shape: Sequence[int] | None = None) -> Summary:
        """A table of layers, output shapes and parameter counts.

        ``input_shape`` is one sample's shape, e.g. ``(1, 28, 28)``; without it
        an image network's shapes show as ``?`` up to its first ``Dense``.

        Returns the table as a ``Summary``, a ``str`` whose ``repr`` is the
        table itself: ``net.summary()`` at the REPL or in a notebook shows the
        table (not a string full of ``\\n``), ``print(net.summary())`` prints
        it, and it can be written to a file like any string. Unlike Keras'
        ``summary()``, which prints and returns None, nothing is printed.
        """
        rows = [("#", "layer", "output shape", "parameters")]
        width = self.in_features
        shape: tuple[int, ...] | None = (
            tuple(int(d) for d in input_shape) if input_shape is not None
            else (width,) if width is not None else None
        )
        total = 0
        for i, layer in enumerate(self.layers):
            if shape is not None:
                shape = layer.output_shape(shape)
            elif hasattr(layer, "out_features"):
                shape = (layer.out_features,)
            count = sum(p.size for p in layer.params.values())
            total += count
            text = "(batch, " + ", ".join(map(str, shape)) + ")" if shape is not None else "?"
            rows.append((str(i), repr(layer), text, f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = [
            "  ".join(
                cell.rjust(w) if c in (0, 3) else cell.ljust(w)
                for c, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
            for row in rows
        ]
        rule = "-" * len(max(lines, key=len))
        lines.insert(1, rule)
        lines.append(rule)
        lines.append(f"total parameters: {total:,}   dtype: {self.dtype}")
        lines.append(f"loss: {self.loss!r}   optimizer: {self.optimizer!r}")
        return Summary("\n".join(lines))

    def get_config(self) -> dict[str, Any]:
        """The architecture as JSON-able data (saved with the weights)."""
        return {
            "layers": [layer.get_config() for layer in self.layers],
            "loss": self.loss.get_config(),
            "optimizer": self.optimizer.get_config(),
            "dtype": str(self.dtype),
        }

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Network([{inner}], loss={self.loss!r}, dtype={str(self.dtype)!r})"

    # -- helpers ------------------------------------------------------------------

    def _as_input(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != self.dtype:
            if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
                raise TypeError(f"input must be numeric, got dtype {x.dtype}")
            x = x.astype(self.dtype)
        if self.takes_images:
            if x.ndim not in (3, 4):
                raise ValueError(
                    f"{self.layers[0].name}: input must be one image (C, H, W) or a batch "
                    f"(n, C, H, W), got shape {x.shape}"
                )
            channels = getattr(self.layers[0], "in_channels", None)
            if x.ndim == 3 and channels is not None and x.shape[0] != channels:
                # (n, H, W) grey pictures read as one image of n channels: say so.
                raise ValueError(
                    f"{self.layers[0].name}: one image must be shaped ({channels}, H, W), got "
                    f"shape {x.shape}" + (f"; for a batch of {len(x)} grey images add the "
                                          "channel axis: x[:, None]" if channels == 1 else "")
                )
        elif x.ndim not in (1, 2):
            width = self.in_features
            flat = width is not None and x.ndim > 2 and math.prod(x.shape[1:]) == width
            raise ValueError(
                f"input must be one sample (features,) or a batch (n, features), got shape "
                f"{x.shape}" + ("; flatten each sample: x.reshape(len(x), -1)" if flat else "")
            )
        elif x.ndim == 2 and self.in_features not in (None, x.shape[1]) \
                and x.size == self.in_features:
            raise ValueError(
                f"input must be one sample ({self.in_features},) or a batch (n, "
                f"{self.in_features}), got shape {x.shape}; for one {x.shape[0]}x{x.shape[1]} "
                "image, flatten it: x.reshape(-1)"
            )
        return x

    def _check_widths(self) -> None:
        channels = None  # channels of an image between layers, where known
        for layer in self.layers:
            n_ch = getattr(layer, "in_channels", None)
            if isinstance(layer, BatchNorm2d):
                n_ch = layer.num_features
            if n_ch is not None and channels is not None and n_ch != channels:
                raise ValueError(
                    f"{layer.name} expects {n_ch} input channels but the layer before it "
                    f"produces {channels}"
                )
            if n_ch is not None or isinstance(layer, (Flatten, Dense)):
                channels = getattr(layer, "out_channels", n_ch)
        width = None
        for layer in self.layers:
            n_in = getattr(layer, "in_features", None)
            if n_in is not None and width is not None and n_in != width:
                raise ValueError(
                    f"{layer.name} expects {n_in} input features but the layer before it "
                    f"produces {width}"
                )
            if width is not None or n_in is not None:
                width = layer.output_features(width if width is not None else n_in)


class Summary(str):
    """The text of ``Network.summary()``; at the REPL it shows as the table it holds."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython / Jupyter
        printer.text(str(self))


def _check_output_for_loss(last: Layer, loss: Loss, out_features: int | None) -> None:
    """Refuse an output layer the loss cannot work with.

    A softmax (sigmoid) output in front of a loss that applies it itself, and
    one output with CrossEntropy (a softmax over one logit is always 1).
    """
    from .activations import Sigmoid, Softmax
    from .losses import _ONE_OUTPUT, BinaryCrossEntropy, CrossEntropy

    if isinstance(loss, CrossEntropy) and out_features == 1:
        raise ValueError(_ONE_OUTPUT)

    for loss_type, layer_type, what in ((CrossEntropy, Softmax, "softmax"),
                                        (BinaryCrossEntropy, Sigmoid, "sigmoid")):
        if isinstance(loss, loss_type) and isinstance(last, layer_type):
            raise ValueError(
                f"{last.name} ends the network, but {loss!r} takes logits and applies the "
                f"{what} itself, so it would be applied twice; remove the last layer (predict_proba "
                f"applies the {what} where you want probabilities)"
            )


def check_tensors(expected: dict[str, tuple[int, ...]], tensors: dict[str, Any]) -> None:
    """Check a state dict against the expected names and shapes.

    Raises ``ValueError`` naming the first missing, unexpected or mis-shaped
    tensor, or one holding NaN or infinity.
    """
    missing = [name for name in expected if name not in tensors]
    if missing:
        name = missing[0]
        raise ValueError(f"missing tensor {name!r} (expected shape {tuple(expected[name])})")
    extra = [name for name in tensors if name not in expected]
    if extra:
        raise ValueError(f"unexpected tensor {extra[0]!r}: this network has no such parameter")
    for name, shape in expected.items():
        value = np.asarray(tensors[name])
        if value.shape != tuple(shape):
            raise ValueError(f"tensor {name!r} has shape {value.shape}, expected {tuple(shape)}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"tensor {name!r} contains NaN or infinite values")
