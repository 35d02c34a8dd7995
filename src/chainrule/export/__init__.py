"""Exporting trained networks to other runtimes.

``to_onnx(network, path)`` writes the inference graph as an ONNX model
(built with the ``onnx`` package, an optional dependency: ``pip install
chainrule[onnx]``). ``Network.to_onnx(path)`` is the same call.
"""

from .onnx import DEFAULT_OPSET, ExportError, to_onnx

__all__ = ["DEFAULT_OPSET", "ExportError", "to_onnx"]
