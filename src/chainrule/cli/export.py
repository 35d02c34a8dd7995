"""``chainrule export``: write a saved model's inference graph as ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import architecture, check_writable_file, load_model, require


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="export a model to ONNX",
                              description="Write a saved model's inference graph as ONNX.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model saved by chainrule")
    p.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    return p


def run(args: argparse.Namespace) -> int:
    network = load_model(args.model)
    require("onnx", "onnx")
    if Path(args.onnx).resolve() == Path(args.model).resolve():
        raise ValueError(f"--onnx {args.onnx} is the model itself; the ONNX file would replace "
                         "it: give --onnx another name (e.g. model.onnx)")
    check_writable_file(args.onnx, "--onnx")
    network.to_onnx(args.onnx)
    print(f"wrote {args.onnx} ({architecture(network)})")
    return 0
