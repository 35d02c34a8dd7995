"""``chainrule predict``: read digits from picture files and print what the model sees."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    as_model_inputs,
    check_input_width,
    check_writable_dir,
    is_model_file,
    load_model,
    model_outputs,
    one_line,
    positive_int,
    require,
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="read digits from PNG/JPEG files and print what the model sees",
        description="Classify pictures of single handwritten digits. Each picture is "
        "prepared the way MNIST was made: grey, ink bright, cropped, scaled into a "
        "20x20 box and centred by mass in 28x28 (needs Pillow).",
    )
    p.add_argument("model", metavar="MODEL", help="a .safetensors model saved by chainrule")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="picture files (PNG, JPEG, ...)")
    p.add_argument("--top", type=positive_int, default=3, metavar="K",
                   help="show the K most likely digits (default 3)")
    p.add_argument("--save-inputs", metavar="DIR",
                   help="also save each prepared 28x28 input as a PNG in DIR, to see "
                   "what the model sees")
    p.add_argument("--no-thicken", dest="thicken", action="store_false",
                   help="keep strokes as drawn, even when much thinner than MNIST's")
    return p


def run(args: argparse.Namespace) -> int:
    from ..images import load_image

    require("PIL", "image")
    network = load_model(args.model, hint="; the model comes first: chainrule predict MODEL "
                         "IMAGE [IMAGE ...]")
    check_input_width(network, args.model, 784, "a prepared image has")
    if network.out_features != 10:
        raise ValueError(
            f"{args.model} has {network.out_features} outputs; a digit classifier has 10"
        )
    # Percentages only where the outputs are probabilities (predict_proba knows the link);
    # a squared-error network with linear outputs shows its outputs as they are.
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a broken model is named below
            network.predict_proba(as_model_inputs(network, np.zeros((1, 784), network.dtype)))
        as_percent = True
    except ValueError:
        as_percent = False
    save_dir = Path(args.save_inputs) if args.save_inputs else None
    if save_dir is not None:
        check_writable_dir(save_dir, "--save-inputs")
        save_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    saved_names: set[str] = set()
    for path in args.images:
        try:
            if is_model_file(path):
                raise ValueError(f"{path} is a model file, not a picture")
            image = load_image(path, thicken=args.thicken)
            # in the network's input shape: a row of 784 (MLP) or a (1, 1, 28, 28) image (CNN)
            inputs = as_model_inputs(network, image.reshape(1, -1))
            scores = model_outputs(network, inputs, args.model, path,
                                   probabilities=as_percent)[0]
        except (OSError, ValueError) as error:
            # One bad file should not hide the answers for the others; the exit status tells.
            print(f"chainrule: error: {one_line(error)}", file=sys.stderr)
            failures += 1
            continue
        order = np.argsort(-scores, kind="stable")[: args.top]
        if as_percent:
            top = "  ".join(f"{k}: {100 * scores[k]:.1f}%" for k in order)
        else:
            top = "outputs " + "  ".join(f"{k}: {scores[k]:.3g}" for k in order)
        print(f"{path}: {order[0]}   ({top})")
        if save_dir is not None:
            # Pictures with the same name from different folders get one file each.
            name, n = Path(path).stem + "-28x28.png", 1
            while name in saved_names:
                n += 1
                name = f"{Path(path).stem}-{n}-28x28.png"
            saved_names.add(name)
            _save_input(image, save_dir / name)
    return 1 if failures else 0


def _save_input(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path)
