"""Hostile model files, checkpoints and networks, and a runner that measures what each costs.

Used by ``tests/test_hostile_files.py`` (small sizes, asserting the documented
error under a memory and a time limit) and by ``benchmarks/hostile_files.py``
(the sizes of issue 10's report, measuring peak memory and time).

Each case builds its input in a directory and names a Python snippet that
runs in a fresh interpreter; the snippet prints one JSON line describing the
outcome: the exception's type and (the start of) its message, and the
message's length.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Outcome:
    error: str | None  # exception type name, None for success, "killed: SIGNAL" or "timeout"
    message: str  # first 400 characters of the message (or of the output)
    message_length: int
    peak_rss_mb: float  # the child's peak resident set size
    seconds: float
    warnings: list[str]


CHILD_PRELUDE = """
import json, sys, warnings
warnings.simplefilter("always")
caught = []
def _show(message, category, *args, **kwargs):
    caught.append(f"{category.__name__}: {str(message)[:200]}")
warnings.showwarning = _show
def report(error=None):
    message = "" if error is None else str(error)
    print(json.dumps({"error": None if error is None else type(error).__name__,
                      "message": message[:400], "length": len(message),
                      "warnings": caught}), flush=True)
try:
{body}
except BaseException as error:  # noqa: BLE001 -- the point is to see what escapes
    report(error)
else:
    report()
"""


def run_child(body: str, *, cwd: Path, address_space: int | None = None,
              timeout: float = 60.0) -> Outcome:
    """Run ``body`` (Python statements) in a fresh interpreter and measure it.

    ``address_space`` (bytes) becomes the child's ``RLIMIT_AS``. The peak
    resident memory comes from ``wait4``'s resource usage, the time is wall time.
    """
    code = CHILD_PRELUDE.replace("{body}", textwrap.indent(textwrap.dedent(body), "    "))

    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, preexec_fn=limit, env=env)
    timed_out = False
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            child.kill()
            pid, status, usage = os.wait4(child.pid, 0)
            timed_out = True
            break
        time.sleep(0.02)
    seconds = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    out = child.stdout.read().decode(errors="replace")
    err = child.stderr.read().decode(errors="replace")
    child.stdout.close()
    child.stderr.close()
    peak = usage.ru_maxrss / 1024  # kB on Linux
    if timed_out:
        return Outcome("timeout", err[-400:], len(err), peak, seconds, [])
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return Outcome(f"killed: {name}", err[-400:], len(err), peak, seconds, [])
    try:
        line = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return Outcome(f"exit {child.returncode}", (out + err)[-400:], len(out + err), peak,
                       seconds, [])
    return Outcome(line["error"], line["message"], line["length"], peak, seconds,
                   line["warnings"])


# -- building the files ------------------------------------------------------------------


def raw_safetensors(header: dict, data: bytes = b"") -> bytes:
    """A safetensors file written by hand: 8-byte little-endian header size, JSON, data."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def small_model_parts():
    """Tensors and metadata of a valid 4-3-2 model file, to be edited."""
    import chainrule as cr

    net = cr.Network([cr.Dense(4, 3, seed=0), cr.ReLU(), cr.Dense(3, 2, seed=1)])
    tensors = {k: np.ascontiguousarray(v) for k, v in net.parameters().items()}
    from chainrule.io import model_metadata

    return tensors, model_metadata(net)


def with_digest(tensors, metadata) -> dict:
    """The metadata with a digest that matches: an attacker can always compute one."""
    from chainrule.io import DIGEST_KEY, tensor_digest

    metadata = dict(metadata)
    metadata.pop(DIGEST_KEY, None)
    metadata[DIGEST_KEY] = tensor_digest(tensors, metadata)
    return metadata


def write_model(path: Path, tensors, metadata, digest: bool = True) -> Path:
    from safetensors.numpy import save

    if digest:
        metadata = with_digest(tensors, metadata)
    path.write_bytes(save(tensors, metadata=metadata))
    return path


def architecture_of_empty_objects(directory: Path, megabytes: float) -> Path:
    """A model whose architecture is ``[{},{},...]``: each 3 bytes of JSON cost ~70 of objects."""
    tensors, metadata = small_model_parts()
    count = int(megabytes * 2**20 / 3)
    metadata["architecture"] = "[" + "{}," * count + "{}]"
    return write_model(directory / "empty_objects.safetensors", tensors, metadata)


def zero_size_tensors(directory: Path, count: int) -> Path:
    """A header listing ``count`` tensors of zero elements (so no data), plus a model's metadata."""
    _, metadata = small_model_parts()
    header: dict = {"__metadata__": metadata}
    for i in range(count):
        header[f"t{i}"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    path = directory / "zero_size_tensors.safetensors"
    path.write_bytes(raw_safetensors(header))
    return path


def sparse_huge_tensor(directory: Path, gibibytes: float) -> Path:
    """A model file whose ``0.weight`` claims ``gibibytes`` of float32 in a sparse file.

    The data is all there (as a hole), so the file is well-formed; its
    architecture wants a (3, 4) weight, which a header-only check can see.
    """
    _, metadata = small_model_parts()
    count = int(gibibytes * 2**30) // 4
    header = {"__metadata__": metadata,
              "0.weight": {"dtype": "F32", "shape": [count], "data_offsets": [0, 4 * count]}}
    path = directory / "sparse_huge_tensor.safetensors"
    with open(path, "wb") as f:
        f.write(raw_safetensors(header))
        f.truncate(f.tell() + 4 * count)
    return path


def valid_model(directory: Path, megabytes: float) -> Path:
    """A real model file of about ``megabytes`` (one square float32 layer)."""
    import chainrule as cr

    width = int((megabytes * 2**20 / 4) ** 0.5)
    net = cr.Network([cr.Dense(width, width, bias=True, seed=0)])
    path = directory / "valid_model.safetensors"
    net.save(path)
    return path


def architecture_field(directory: Path, architecture: str, name: str) -> Path:
    """A model whose architecture field is ``architecture`` (any text), digest consistent."""
    tensors, metadata = small_model_parts()
    metadata["architecture"] = architecture
    return write_model(directory / name, tensors, metadata)


def long_layer_type(directory: Path, megabytes: float) -> Path:
    tensors, metadata = small_model_parts()
    metadata["architecture"] = json.dumps([{"type": "A" * int(megabytes * 2**20)}])
    return write_model(directory / "long_layer_type.safetensors", tensors, metadata)


def small_checkpoint(directory: Path, change, name: str, optimizer: str = "adam",
                     mid_epoch: bool = False) -> Path:
    """A valid checkpoint of a tiny run, edited by ``change(tensors, metadata)``, digest refreshed."""
    from safetensors.numpy import load

    import chainrule as cr

    net = cr.Network.from_sizes([4, 5, 3], loss="cross_entropy", optimizer=optimizer,
                                dropout=0.2, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((12, 4)), rng.integers(0, 3, 12)
    path = directory / name
    if mid_epoch:
        class Stop(cr.Callback):
            def on_batch_end(self, step, logs):
                self.network.stop_training = True
        net.fit(x, y, epochs=2, batch_size=4, seed=0, verbose=0, checkpoint=path,
                callbacks=[Stop()])
    else:
        net.fit(x, y, epochs=1, batch_size=4, seed=0, verbose=0, checkpoint=path)
    data = path.read_bytes()
    tensors = load(data)
    n = struct.unpack("<Q", data[:8])[0]
    metadata = json.loads(data[8:8 + n])["__metadata__"]
    change(tensors, metadata)
    return write_model(path, tensors, metadata)


RESUME_BODY = """
import numpy as np, chainrule as cr
net = cr.Network.from_sizes([4, 5, 3], loss="cross_entropy", optimizer="{optimizer}",
                            dropout=0.2, seed=0)
rng = np.random.default_rng(0)
x, y = rng.random((12, 4)), rng.integers(0, 3, 12)
net.fit(x, y, epochs=3, batch_size=4, verbose=0, resume={path!r},
        augment=lambda xb, rng: xb + 0.01 * rng.integers(-2, 3))  # draws like random_shift
"""


def mt19937_all_zero(tensors, metadata):
    metadata["rng"] = json.dumps({"bit_generator": "MT19937",
                                  "state": {"key": [0] * 624, "pos": 624}})


def epoch_loss_null(tensors, metadata):
    fit = json.loads(metadata["fit"])
    fit["epoch_loss"] = None
    metadata["fit"] = json.dumps(fit)


def negative_second_moment(tensors, metadata):
    tensors["optimizer.0.weight.v"] = -np.abs(tensors["optimizer.0.weight.v"]) - 1.0
