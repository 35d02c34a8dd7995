"""ONNX export: one ONNX node (or two) per chainrule layer, inference mode.

The graph takes ``input`` shaped ``(batch, in_features)`` (or, for a
network on images, ``(batch, C, H, W)``), with ``batch`` a symbolic (dynamic)
dimension, and returns ``output`` shaped ``(batch, out_features)`` in the
network's dtype. Each layer maps to standard operators of the default ONNX
domain:

=================  =========================================================
chainrule          ONNX
=================  =========================================================
Dense              ``Gemm(x, W, b, transB=1)``: ``x @ W.T + b``, the same math
ReLU               ``Relu``
LeakyReLU(a)       ``PRelu(x, a)``, ``a`` a tensor in the model's dtype
                   (``LeakyRelu``'s float32 attribute would round a float64 slope)
Sigmoid(scale)     ``Mul(x, scale)`` then ``Sigmoid`` (just ``Sigmoid`` for scale 1)
Tanh               ``Tanh``
Softmax            ``Softmax(axis=-1)`` (per row, as in chainrule)
Identity           ``Identity``
Dropout            ``Identity`` (dropout is off in inference)
Conv2D             ``Conv(x, W, b)`` with ``kernel_shape``, ``strides`` and
                   ``pads`` ``[ph, pw, ph, pw]``; cross-correlation in both
MaxPool2D          ``MaxPool`` (``kernel_shape``, ``strides``, no padding)
AvgPool2D          ``AveragePool`` (the same; no padding, so no pad counting)
Flatten            ``Flatten(axis=1)``: row-major, as chainrule and PyTorch
BatchNorm1d/2d     ``BatchNormalization`` in inference form: the running
                   statistics, ``epsilon``; weight 1 and bias 0 without ``affine``
=================  =========================================================

Any other layer (a user's own ``Layer`` subclass) raises ``ExportError``
naming it rather than exporting something that computes a different function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any

import numpy as np

__all__ = ["DEFAULT_OPSET", "ExportError", "to_onnx"]

#: ONNX operator set the graph is written for. 17 is read by every
#: onnxruntime since 1.11 and has ``Softmax`` with a per-axis meaning (opset >= 13).
DEFAULT_OPSET = 17
_MIN_OPSET = 13


class ExportError(ValueError):
    """The network cannot be written in the requested format; the message names the layer."""


def to_onnx(
    network: Any,
    path: str | PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    input_shape: Sequence[int] | None = None,
) -> Any:
    """Export ``network``'s inference graph to ONNX.

    Parameters
    ----------
    network : Network
    path : path, optional
        Where to write the ``.onnx`` file (atomically); ``None`` only returns the model.
    opset : int
        ONNX operator set version (13 or newer; default ``DEFAULT_OPSET``).
    input_shape : (C, H, W), optional
        One image's shape, for a network on images; without it the graph's
        input is ``(batch, C, "height", "width")``, height and width symbolic.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model``; input ``"input"`` shaped
        ``("batch", in_features)`` or ``("batch", C, H, W)``, output ``"output"``.

    Raises
    ------
    ExportError
        If a layer has no ONNX equivalent (the message names it), or the
        network's input width is unknown.
    """
    try:
        from onnx import TensorProto, checker, helper, numpy_helper
    except ImportError as error:
        raise ImportError(
            "ONNX export needs the onnx package: pip install 'chainrule[onnx]'"
        ) from error

    opset = int(opset)
    if opset < _MIN_OPSET:
        raise ValueError(f"opset must be >= {_MIN_OPSET} (per-row Softmax), got {opset}")
    n_in, n_out = network.in_features, network.out_features
    if getattr(network, "takes_images", False):
        input_dims: list[Any] = ["batch", *_image_dims(network, input_shape)]
    elif n_in is None:
        raise ExportError("cannot export a network whose input width is unknown (no Dense layer)")
    else:
        input_dims = ["batch", n_in]
    elem_type = {np.dtype(np.float32): TensorProto.FLOAT,
                 np.dtype(np.float64): TensorProto.DOUBLE}[np.dtype(network.dtype)]

    graph = _Graph(helper, numpy_helper, np.dtype(network.dtype))
    current = "input"
    for i, layer in enumerate(network.layers):
        # By exact class: a subclass may compute something else.
        exporter = _exporters().get(type(layer))
        if exporter is None:
            supported = ", ".join(sorted(cls.__name__ for cls in _exporters()))
            raise ExportError(
                f"cannot export layer {i} ({layer!r}) to ONNX: no exporter for "
                f"{type(layer).__name__}; supported layers: {supported}"
            )
        current = exporter(graph, layer, current, f"layer{i}")
    # The last node writes "output": rename its result rather than add a node.
    graph.rename_output(current, "output")

    model = helper.make_model(
        helper.make_graph(
            graph.nodes, "chainrule",
            inputs=[helper.make_tensor_value_info("input", elem_type, input_dims)],
            outputs=[helper.make_tensor_value_info("output", elem_type, ["batch", n_out])],
            initializer=graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="chainrule",
        producer_version=_version(),
        doc_string=repr(network),
    )
    # The oldest IR version that can carry this opset, so older runtimes read the file.
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    checker.check_model(model, full_check=True)
    if path is not None:
        from ..io import atomic_write_bytes

        atomic_write_bytes(path, model.SerializeToString(), what="ONNX model")
    return model


def _version() -> str:
    from .._version import __version__

    return __version__


class _Graph:
    """Collects nodes and initializers, handing out unique tensor names."""

    def __init__(self, helper: Any, numpy_helper: Any, dtype: np.dtype) -> None:
        self.helper, self.numpy_helper, self.dtype = helper, numpy_helper, dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def constant(self, name: str, value: np.ndarray | float) -> str:
        array = np.ascontiguousarray(value, dtype=self.dtype)
        self.initializers.append(self.numpy_helper.from_array(array, name=name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def rename_output(self, tensor: str, new: str) -> None:
        if tensor == "input":  # no node at all: impossible, a Network has a Dense layer
            self.node("Identity", ["input"], new)
            return
        for node in self.nodes:
            node.input[:] = [new if t == tensor else t for t in node.input]
            node.output[:] = [new if t == tensor else t for t in node.output]


def _dense(g: _Graph, layer: Any, x: str, name: str) -> str:
    inputs = [x, g.constant(f"{name}.weight", layer.params["weight"])]
    if layer.use_bias:
        inputs.append(g.constant(f"{name}.bias", layer.params["bias"]))
    return g.node("Gemm", inputs, name, transB=1)


def _image_dims(network: Any, input_shape: Sequence[int] | None) -> list[Any]:
    """``[C, H, W]`` of the input: given, or the channels from the first layer and H, W symbolic."""
    first = network.layers[0]
    channels = getattr(first, "in_channels", getattr(first, "num_features", "channels"))
    if input_shape is None:
        return [channels, "height", "width"]
    dims = [int(d) for d in input_shape]
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"input_shape must be one image's (C, H, W), got {tuple(input_shape)}")
    if isinstance(channels, int) and dims[0] != channels:
        raise ValueError(f"input_shape {tuple(dims)} has {dims[0]} channels; {first.name} "
                         f"takes {channels}")
    return dims


def _conv(g: _Graph, layer: Any, x: str, name: str) -> str:
    inputs = [x, g.constant(f"{name}.weight", layer.params["weight"])]
    if layer.use_bias:
        inputs.append(g.constant(f"{name}.bias", layer.params["bias"]))
    (ph, pw) = layer.padding
    return g.node("Conv", inputs, name, kernel_shape=list(layer.kernel_size),
                  strides=list(layer.stride), pads=[ph, pw, ph, pw])


def _pool(op: str) -> Callable[[_Graph, Any, str, str], str]:
    def export(g: _Graph, layer: Any, x: str, name: str) -> str:
        return g.node(op, [x], name, kernel_shape=list(layer.kernel_size),
                      strides=list(layer.stride))

    return export


def _batch_norm(g: _Graph, layer: Any, x: str, name: str) -> str:
    c = layer.num_features
    weight = layer.params["weight"] if layer.affine else np.ones(c)
    bias = layer.params["bias"] if layer.affine else np.zeros(c)
    inputs = [x, g.constant(f"{name}.weight", weight), g.constant(f"{name}.bias", bias),
              g.constant(f"{name}.running_mean", layer.running_mean),
              g.constant(f"{name}.running_var", layer.running_var)]
    return g.node("BatchNormalization", inputs, name, epsilon=layer.eps)


def _sigmoid(g: _Graph, layer: Any, x: str, name: str) -> str:
    if layer.scale != 1.0:
        x = g.node("Mul", [x, g.constant(f"{name}.scale", layer.scale)], f"{name}.scaled")
    return g.node("Sigmoid", [x], name)


def _exporters() -> dict[type, Callable[[_Graph, Any, str, str], str]]:
    from ..activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
    from ..layers import (
        AvgPool2D,
        BatchNorm1d,
        BatchNorm2d,
        Conv2D,
        Dense,
        Dropout,
        Flatten,
        MaxPool2D,
    )

    return {
        Dense: _dense,
        ReLU: lambda g, layer, x, name: g.node("Relu", [x], name),
        LeakyReLU: lambda g, layer, x, name: g.node(
            "PRelu", [x, g.constant(f"{name}.slope", layer.negative_slope)], name),
        Sigmoid: _sigmoid,
        Tanh: lambda g, layer, x, name: g.node("Tanh", [x], name),
        Softmax: lambda g, layer, x, name: g.node("Softmax", [x], name, axis=-1),
        Identity: lambda g, layer, x, name: g.node("Identity", [x], name),
        Dropout: lambda g, layer, x, name: g.node("Identity", [x], name),
        Conv2D: _conv,
        MaxPool2D: _pool("MaxPool"),
        AvgPool2D: _pool("AveragePool"),
        Flatten: lambda g, layer, x, name: g.node("Flatten", [x], name, axis=1),
        BatchNorm1d: _batch_norm,
        BatchNorm2d: _batch_norm,
    }
