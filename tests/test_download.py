"""Downloads against hostile servers on 127.0.0.1: a deadline, and only DownloadError.

Each server is a raw socket in a thread of this process, stopped after the
test. Where time is the point (a server dripping one byte a second, or
silent), the client runs in a child process under a memory limit and a
wall-clock limit, so a regression fails the test instead of hanging it.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

import hostile_files as h
from chainrule.datasets import ChecksumError, DownloadError, download_mnist

NAME = "t10k-labels-idx1-ubyte.gz"
SUMS = {name: ("sha256", "0" * 64) for name in (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _drip(conn, data: bytes, stop: threading.Event, pause: float = 1.0) -> None:
    for i in range(len(data)):
        if stop.wait(pause):
            return
        conn.sendall(data[i : i + 1])


BEHAVIOURS = {
    "drip_body": lambda c, s: (c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
                               _drip(c, bytes(1000), s)),
    "drip_headers": lambda c, s: _drip(c, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000, s),
    "silent": lambda c, s: s.wait(60),
    "bad_status": lambda c, s: c.sendall(b"HTTP/1.1 two hundred OK\r\n\r\n"),
    "not_http": lambda c, s: c.sendall(b"SSH-2.0-OpenSSH_9.0\r\n"),
    "bad_chunk": lambda c, s: c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        b"zz\r\nabc\r\n0\r\n\r\n"),
    "cut_chunk": lambda c, s: c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        b"100\r\nabc"),
    "many_headers": lambda c, s: c.sendall(b"HTTP/1.1 200 OK\r\n"
                                           + b"".join(b"X-%d: y\r\n" % i for i in range(101))
                                           + b"Content-Length: 0\r\n\r\n"),
    "long_header": lambda c, s: c.sendall(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000
                                          + b"\r\n\r\n"),
    "truncated": lambda c, s: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                                        + bytes(500)),
    "closed": lambda c, s: None,
    "redirect_loop": lambda c, s: c.sendall(b"HTTP/1.1 302 Found\r\nLocation: /again\r\n"
                                            b"Content-Length: 0\r\n\r\n"),
    "bad_length": lambda c, s: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nabc"),
    "wrong_digest": lambda c, s: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
}


class Server:
    """A raw-socket server on 127.0.0.1 answering every connection with one behaviour."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = BEHAVIOURS[behaviour]
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)  # the request
                self.behaviour(conn, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for t in self.threads:
            t.join(5)
        self.sock.close()


@pytest.fixture
def serve(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    servers = []

    def start(behaviour):
        servers.append(Server(behaviour))
        return servers[-1].url

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("behaviour, message", [
    ("bad_status", "malformed status line"),
    ("not_http", "malformed status line"),
    ("bad_chunk", "chunked transfer encoding"),
    ("cut_chunk", "chunked transfer encoding"),
    ("many_headers", "too many headers"),
    ("long_header", "over-long line"),
    ("truncated", "truncated: the connection ended after 500 of the 1,000 bytes"),
    ("closed", "closed the connection without sending a response"),
    ("redirect_loop", "more than 5 redirects"),
    ("bad_length", "bad Content-Length 'lots'"),
])
def test_every_failure_is_one_download_error(serve, tmp_path, behaviour, message):
    url = serve(behaviour)
    cache = tmp_path / "cache"
    start = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        download_mnist(cache, url=url, checksums=SUMS, timeout=20, progress=False)
    assert time.perf_counter() - start < 10
    text = str(info.value)
    assert isinstance(info.value, OSError) and not isinstance(info.value, ChecksumError)
    assert message in text and "\n" not in text
    assert text.startswith(f"downloading {url}train-images-idx3-ubyte.gz failed: ")
    assert list(cache.iterdir()) == []  # nothing of the failed file is left


def test_wrong_digest_is_a_checksum_error_and_a_download_error(serve, tmp_path):
    url = serve("wrong_digest")
    with pytest.raises(ChecksumError) as info:
        download_mnist(tmp_path, url=url, checksums=SUMS, timeout=20, progress=False)
    assert isinstance(info.value, DownloadError) and isinstance(info.value, ValueError)
    assert "has sha256 ba7816bf" in str(info.value)  # sha256(b"abc")


def test_timeout_must_be_positive(tmp_path):
    for bad in (0, -1, float("nan"), True, "10"):
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            download_mnist(tmp_path, url="http://127.0.0.1:9/", checksums=SUMS, timeout=bad)


@pytest.mark.parametrize("behaviour", ["drip_body", "drip_headers", "silent"])
def test_slow_servers_meet_the_overall_deadline(serve, tmp_path, behaviour):
    url = serve(behaviour)
    result = h.run_limited(f"""
        from chainrule.datasets import download_mnist
        download_mnist({str(tmp_path / "cache")!r}, url={url!r}, checksums={SUMS!r},
                       timeout=1, progress=False)
    """, memory_mb=1000, timeout=30, env={"no_proxy": "*", "NO_PROXY": "*"})
    assert not result["timed_out"], result
    assert result["error"] == "DownloadError", result
    assert "timed out: the download did not finish within timeout=1 s" in result["message"]
    assert 0.9 < result["seconds"] < 8, result  # includes importing chainrule
    assert "OSError" in result["mro"]
    assert not any(Path(tmp_path / "cache").iterdir())


def test_progress_bar_shows_on_a_terminal(serve, tmp_path, monkeypatch, capsys):
    # tqdm draws only on a terminal (disable=None); with progress=False never.
    import tqdm

    seen = []
    real = tqdm.tqdm

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", spy)
    url = serve("wrong_digest")
    with pytest.raises(ChecksumError):
        download_mnist(tmp_path, url=url, checksums=SUMS, timeout=20)
    assert seen[0]["total"] == 3 and seen[0]["disable"] is None and seen[0]["unit"] == "B"
    with pytest.raises(ChecksumError):
        download_mnist(tmp_path, url=url, checksums=SUMS, timeout=20, progress=False)
    assert seen[1]["disable"] is True
