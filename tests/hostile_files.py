"""Generators of hostile input files, and a runner that measures a case in a child process.

Shared by the hostile-input tests and ``benchmarks/hostile_inputs.py``. Each
generator writes a small file quickly: the bombs are built from deflate blocks
that are compressed once and repeated (``Z_FULL_FLUSH`` makes each block
independent), so a 0.9 MB PNG that decodes to 900 MB takes milliseconds.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

_ZERO_BLOCK = 1 << 20


def _repeated_zlib(total: int, prefix: bytes = b"") -> bytes:
    """A zlib stream for ``prefix`` followed by ``total - len(prefix)`` zero bytes."""
    comp = zlib.compressobj(9)
    out = [comp.compress(prefix), comp.flush(zlib.Z_FULL_FLUSH)]
    remaining = total - len(prefix)
    block = bytes(_ZERO_BLOCK)
    encoded = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(remaining, _ZERO_BLOCK)
    out.extend([encoded] * full)
    # Adler-32 (RFC 1950) after n more zero bytes: a = 1 + sum of bytes stays, b grows by n * a.
    adler = zlib.adler32(prefix)
    a, b = adler & 0xFFFF, adler >> 16
    b = (b + remaining * a) % 65521
    adler = (b << 16) | a
    tail = bytes(rest)
    raw = b"".join(out) + comp.compress(tail) + comp.flush(zlib.Z_FINISH)
    # compressobj computed its own adler over what it saw (only one copy of the
    # block); replace the trailer with the real one.
    return raw[:-4] + struct.pack(">I", adler)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, width: int, height: int, *, colour_type: int = 0, bit_depth: int = 8,
             text_bytes: int = 0) -> Path:
    """A valid PNG of ``width x height`` black pixels (zero bytes), filter 0 on every row.

    ``colour_type`` 0 is greyscale, 6 RGBA; ``bit_depth`` 8 or 16. ``text_bytes``
    adds a tEXt chunk of that size before the image data.
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = 1 + width * channels * bit_depth // 8
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    parts = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", ihdr)]
    if text_bytes:
        parts.append(_png_chunk(b"tEXt", b"Comment\0" + b"x" * text_bytes))
    parts += [_png_chunk(b"IDAT", _repeated_zlib(row * height)), _png_chunk(b"IEND", b"")]
    Path(path).write_bytes(b"".join(parts))
    return Path(path)


def gif_screen_bomb(path: Path) -> Path:
    """A 57-byte GIF whose logical screen claims 65535 x 65535 pixels (one 1x1 frame)."""
    data = (
        b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x80\x00\x00"  # 2-colour table
        + b"\x00\x00\x00\xff\xff\xff"
        + b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # graphic control extension
        + b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00"  # image descriptor
        + b"\x02\x02\x44\x01\x00"  # LZW min code size 2, one sub-block
        + b"\x3b"
    )
    data += b"\x00" * (57 - len(data))  # pad to the size in the report (ignored after ';')
    Path(path).write_bytes(data)
    return Path(path)


def eps_as_png(path: Path) -> Path:
    """A PostScript picture under a .png name: Pillow's EPS plugin would run Ghostscript."""
    body = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 4 4 moveto 24 24 lineto stroke\nshowpage\n"
    Path(path).write_bytes(body)
    return Path(path)


def fake_ghostscript(directory: Path) -> Path:
    """An executable ``gs`` in ``directory`` that records each call in ``directory/gs-called``."""
    directory.mkdir(parents=True, exist_ok=True)
    gs = directory / "gs"
    gs.write_text(f"#!/bin/sh\necho \"$@\" >> '{directory / 'gs-called'}'\nexit 1\n")
    gs.chmod(0o755)
    return gs


def idx_gzip_bomb(path: Path, n_images: int) -> Path:
    """A gzip file with an honest IDX header for ``n_images`` 28x28 uint8 images of zeros."""
    header = struct.pack(">BBBBIII", 0, 0, 0x08, 3, n_images, 28, 28)
    deflate = _repeated_zlib(len(header) + n_images * 784, prefix=header)
    # gzip = 10-byte header + raw deflate + crc32 + isize; reuse the zlib body (skip
    # its 2-byte header and 4-byte adler trailer). The CRC is not checked before the
    # end, so any value will do for a file that must be refused long before it.
    body = deflate[2:-4]
    size = (len(header) + n_images * 784) & 0xFFFFFFFF
    data = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body + struct.pack("<II", 0, size)
    Path(path).write_bytes(data)
    return Path(path)


def small_idx_labels(path: Path, n: int) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 0x08, 1, n) + bytes(n))
    return Path(path)


# -- a child process under limits ------------------------------------------------------

_CHILD = """
import json, os, resource, sys, time, traceback
limit = {limit}
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
start = time.perf_counter()
result = {{"error": None, "message": None}}
try:
{body}
except BaseException as exc:
    result["error"] = type(exc).__name__
    result["mro"] = [c.__name__ for c in type(exc).__mro__]
    result["message"] = str(exc)[:2000]
result["seconds"] = time.perf_counter() - start
# VmHWM is this process's own high-water mark; ru_maxrss would carry over the
# parent's peak through fork and exec on Linux.
try:
    with open("/proc/self/status") as status:
        hwm = [line for line in status if line.startswith("VmHWM:")][0]
    result["peak_mb"] = int(hwm.split()[1]) / 1024
except OSError:
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(result))
"""


def run_limited(body: str, *, memory_mb: int | None = 1500, timeout: float = 60,
                env: dict | None = None) -> dict:
    """Run ``body`` (Python statements) in a fresh interpreter under an address-space limit.

    Returns a dict with ``error`` (exception class name or None), ``message``,
    ``seconds`` (time spent in ``body``), ``peak_mb`` (the child's peak resident
    memory, including the interpreter and its imports) and ``wall`` (seconds
    the whole child took). ``timed_out`` is True if it had to be killed.
    """
    code = _CHILD.format(limit=int(memory_mb * 2**20) if memory_mb else 0,
                         body=textwrap.indent(textwrap.dedent(body), "    "))
    child_env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    child_env.update(env or {})
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=child_env)
    except subprocess.TimeoutExpired:
        return {"timed_out": True, "wall": time.perf_counter() - start, "error": "timeout"}
    wall = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
            result.update(timed_out=False, wall=wall, stderr=proc.stderr[-3000:],
                          returncode=proc.returncode)
            return result
    return {"timed_out": False, "wall": wall, "error": f"crashed (exit {proc.returncode})",
            "stderr": proc.stderr[-3000:], "returncode": proc.returncode}
