"""Peak memory and time of loading hostile files and building oversized networks.

    python benchmarks/hostile_files.py                 # the sizes of issue 10's report
    python benchmarks/hostile_files.py --small         # the sizes the tests use
    python benchmarks/hostile_files.py --only valid    # cases whose name contains "valid"

Each case runs in a fresh interpreter (``tests/hostile_cases.py``), under an
address-space limit (``RLIMIT_AS``) and a time limit, and prints what came
out of it (the exception type and the start of its message), the child's peak
resident memory and its wall time. ``valid model`` also prints the
peak-memory factor of loading a valid model: (peak RSS - RSS of an
interpreter that imported chainrule) / file size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import hostile_cases as hc  # noqa: E402

GIB = 2**30


def cases(small: bool):
    """name -> (build(directory) -> body, address-space limit, timeout)."""
    mb = 8 if small else 93
    return {
        "architecture [{},{},...]": (
            lambda d: f"import chainrule as cr\ncr.load({str(hc.architecture_of_empty_objects(d, mb))!r})",
            4 * GIB, 120),
        "zero-size tensors": (
            lambda d: f"import chainrule as cr\ncr.load({str(hc.zero_size_tensors(d, 100_000 if small else 1_300_000))!r})",
            4 * GIB, 120),
        "sparse 2 GiB tensor, load_checkpoint": (
            lambda d: "from chainrule.checkpoint import load_checkpoint\n"
                      f"load_checkpoint({str(hc.sparse_huge_tensor(d, 2))!r})",
            6 * GIB, 120),
        "sparse 2 GiB tensor, load": (
            lambda d: f"import chainrule as cr\ncr.load({str(hc.sparse_huge_tensor(d, 2))!r})",
            6 * GIB, 120),
        "valid model": (
            lambda d: f"import chainrule as cr\ncr.load({str(hc.valid_model(d, 64 if small else 512))!r})",
            None, 300),
        "30 MB layer type": (
            lambda d: f"import chainrule as cr\ncr.load({str(hc.long_layer_type(d, 1 if small else 30))!r})",
            4 * GIB, 120),
        "FIFO as model": (
            lambda d: (os.mkfifo(d / "fifo.safetensors"),
                       f"import chainrule as cr\ncr.load({str(d / 'fifo.safetensors')!r})")[1],
            4 * GIB, 10),
        "directory as model": (
            lambda d: f"import chainrule as cr\ncr.load({str(d)!r})", 4 * GIB, 10),
        "MT19937 all-zero state, resume": (
            lambda d: hc.RESUME_BODY.format(optimizer="adam", path=str(hc.small_checkpoint(
                d, hc.mt19937_all_zero, "mt.ckpt")),),
            4 * GIB, 10),
        "epoch_loss null, resume": (
            lambda d: hc.RESUME_BODY.format(optimizer="adam", path=str(hc.small_checkpoint(
                d, hc.epoch_loss_null, "el.ckpt", mid_epoch=True))),
            4 * GIB, 30),
        "negative Adam second moment, resume": (
            lambda d: hc.RESUME_BODY.format(optimizer="adam", path=str(hc.small_checkpoint(
                d, hc.negative_second_moment, "v.ckpt"))),
            4 * GIB, 30),
        "from_sizes([784, 2000000, 10]), 4 GiB limit": (
            lambda d: "import chainrule as cr\ncr.Network.from_sizes([784, 2000000, 10])",
            4 * GIB, 120),
        "from_sizes([784, 100000, 10]), 768 MiB limit": (
            lambda d: "import chainrule as cr\ncr.Network.from_sizes([784, 100000, 10])",
            768 * 2**20, 120),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the sizes the tests use")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = hc.run_child("import chainrule", cwd=Path(tmp))
        print(f"baseline (import chainrule): {base.peak_rss_mb:.0f} MB, {base.seconds:.2f} s")
        print("| case | outcome | message length | peak RSS (MB) | time (s) |")
        print("|---|---|---|---|---|")
        for name, (build, limit, timeout) in cases(args.small).items():
            if args.only and args.only not in name:
                continue
            directory = Path(tmp) / str(abs(hash(name)))
            directory.mkdir()
            body = build(directory)
            out = hc.run_child(body, cwd=directory, address_space=limit, timeout=timeout)
            message = out.message.replace("\n", " ").replace("|", "/")[:110]
            print(f"| {name} | {out.error}: {message} | {out.message_length} "
                  f"| {out.peak_rss_mb:.0f} | {out.seconds:.2f} |", flush=True)
            if name == "valid model":
                size = sum(p.stat().st_size for p in directory.glob("*.safetensors"))
                factor = (out.peak_rss_mb - base.peak_rss_mb) * 2**20 / size
                print(f"|  (valid model: {size / 2**20:.0f} MB file, peak-memory factor "
                      f"{factor:.2f}x the file size) | | | | |")
            for path in directory.iterdir():
                path.unlink()


if __name__ == "__main__":
    main()
