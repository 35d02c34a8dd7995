"""Test accuracy of the CNN recipe (``chainrule train --model cnn``) over seeds, each in its own process.

The recipe is meant to reach 99.0% on the real MNIST test set from the
10,000 bundled training digits; one run says little, because a different
BLAS thread count or summation order changes the last bits and the epochs
amplify them. This trains ``CNNRecipe()`` (its defaults, one BLAS thread)
for each seed in a fresh process, two at a time on two cores, and appends
one line per run to ``benchmarks/CNN_ACCURACY.md``::

    python benchmarks/cnn_recipe_accuracy.py --seeds 0 1          # the default recipe
    python benchmarks/cnn_recipe_accuracy.py --seeds 0 --epochs 12 --batch-norm
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
from threadpoolctl import threadpool_limits
from chainrule.datasets import load_mnist
from chainrule.recipes_cnn import CNNRecipe, train_cnn
seed, epochs, batch_norm = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
recipe = CNNRecipe(seed=seed, batch_norm=batch_norm)
if epochs != "default":
    recipe = recipe.replace(epochs=int(epochs))
(x, y), (x_test, y_test) = load_mnist(flatten=False)
start = time.perf_counter()
with threadpool_limits(1):
    network, _ = train_cnn(recipe, x, y)
    accuracy = network.evaluate(x_test, y_test, batch_size=500)["accuracy"]
print(json.dumps({"seed": seed, "epochs": recipe.epochs, "batch_norm": batch_norm,
                  "accuracy": accuracy, "seconds": time.perf_counter() - start}))
"""


def run(seed: int, epochs: str, batch_norm: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(seed), epochs, str(int(batch_norm))],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", default="default", help="default: the recipe's")
    parser.add_argument("--batch-norm", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "CNN_ACCURACY.md")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                            capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()[0]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda s: run(s, args.epochs, args.batch_norm), args.seeds))
    lines = []
    for r in results:
        line = (f"| {datetime.date.today()} | {commit} | {r['seed']} | {r['epochs']} | "
                f"{'yes' if r['batch_norm'] else 'no'} | {100 * r['accuracy']:.2f}% | "
                f"{r['seconds']:.0f} s | {load:.1f} |")
        print(line)
        lines.append(line)
    if not args.out.exists():
        args.out.write_text(
            "# CNN recipe: test accuracy over seeds\n\n"
            "Written by `python benchmarks/cnn_recipe_accuracy.py` (one BLAS thread per run, "
            f"two runs at a time on {os.cpu_count()} cores, {platform.machine()}; the time "
            "includes evaluation; load is the 1-minute load average at the start).\n\n"
            "| date | commit | seed | epochs | batch norm | test accuracy | time | load |\n"
            "|---|---|---|---|---|---|---|---|\n")
    with args.out.open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
