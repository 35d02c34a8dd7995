"""Peak memory and time of chainrule's readers on hostile pictures, IDX files and servers.

Each case runs in a fresh interpreter under an address-space limit
(``resource.setrlimit(RLIMIT_AS)``) and a wall-clock limit; the peak resident
memory (VmHWM) includes the interpreter and its imports (about 45 MB with
NumPy and Pillow), and the time includes importing chainrule. Downloads go to
servers on 127.0.0.1 started here (tests/test_download.py) with timeout=2.
Run from the repository root::

    python benchmarks/hostile_inputs.py [--memory-mb 2000] [--timeout 60]

The results of the last run are kept in ``benchmarks/hostile_inputs.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import hostile_files as h  # noqa: E402


def cases(root: Path) -> list[tuple[str, str]]:
    """(name, Python statements run in the child) for each hostile input."""
    out = []
    for name, make in [
        ("PNG 30000x30000 (0.9 MB)", lambda p: h.png_bomb(p, 30000, 30000)),
        ("GIF screen 65535x65535 (57 B)", h.gif_screen_bomb),
        ("PNG 13000x13000 (167 KB)", lambda p: h.png_bomb(p, 13000, 13000)),
        ("PNG 7000x5700 RGBA 16-bit (accepted)", lambda p: h.png_bomb(p, 7000, 5700, colour_type=6,
                                                                      bit_depth=16)),
        ("PNG 7000x5700 grey 16-bit (accepted)", lambda p: h.png_bomb(p, 7000, 5700, bit_depth=16)),
        ("PNG with a 60 MB text chunk", lambda p: h.png_bomb(p, 28, 28, text_bytes=60 * 2**20)),
        ("PNG with a 47 MB text chunk (accepted)",
         lambda p: h.png_bomb(p, 28, 28, text_bytes=47 * 2**20)),
    ]:
        path = make(root / (name.split()[0].lower() + str(len(out)) + ".png"))
        out.append((name, f"from chainrule.images import load_image\nload_image({str(path)!r})"))
    bomb = h.idx_gzip_bomb(root / "bomb-idx3-ubyte.gz", 5_400_000)
    out.append(("IDX .gz 4.2 MB claiming 5.4M images",
                f"from chainrule.datasets import read_idx\nread_idx({str(bomb)!r})"))
    return out


def download_cases(timeout: float) -> None:
    """Each hostile server of tests/test_download.py against download_mnist(timeout=2)."""
    from test_download import SUMS, Server

    for behaviour in ["drip_body", "drip_headers", "silent", "bad_status", "bad_chunk",
                      "many_headers", "truncated"]:
        server = Server(behaviour)
        try:
            r = h.run_limited(f"""
                from chainrule.datasets import download_mnist
                download_mnist({tempfile.mkdtemp()!r}, url={server.url!r}, checksums={SUMS!r},
                               timeout=2)
            """, memory_mb=1000, timeout=timeout, env={"no_proxy": "*", "NO_PROXY": "*"})
        finally:
            server.close()
        if r.get("timed_out"):
            print(f"| server: {behaviour} | killed after {timeout:.0f} s | - | > {timeout:.0f} |")
            continue
        outcome = (r["error"] or "read") + ": " + (r.get("message") or "").split("failed: ")[-1]
        print(f"| server: {behaviour} | {outcome[:110]} | {r['peak_mb']:.0f} | "
              f"{r['seconds']:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-mb", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("| case | outcome | peak RSS (MB) | time (s) |\n|---|---|---|---|")
        for name, body in cases(Path(tmp)):
            r = h.run_limited(body, memory_mb=args.memory_mb, timeout=args.timeout)
            if r.get("timed_out"):
                print(f"| {name} | killed after {args.timeout:.0f} s | - | > {args.timeout:.0f} |")
                continue
            outcome = r["error"] or "read"
            if r.get("message"):
                outcome += ": " + r["message"].splitlines()[0][:90]
            print(f"| {name} | {outcome} | {r.get('peak_mb', float('nan')):.0f} | "
                  f"{r.get('seconds', r['wall']):.2f} |", flush=True)
    download_cases(args.timeout)


if __name__ == "__main__":
    main()
