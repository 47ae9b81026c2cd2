"""Where the files derived from a dataset live (decoded images, its evaluator), and how they are written safely.

Beside the data (DATA/.mnist_gan_cache/) when that folder can hold them; otherwise (a read-only folder or mount,
or a file by that name) in the user's cache, one folder per data folder: $MNIST_GAN_CACHE_DIR when set (then
always), else $XDG_CACHE_HOME/mnist_gan or ~/.cache/mnist_gan, as torch and Hugging Face keep theirs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..files import atomic_output

log = logging.getLogger(__name__)
CACHE_DIR = ".mnist_gan_cache"
CACHE_ENV = "MNIST_GAN_CACHE_DIR"


def cache_dir(data_root: str | Path) -> Path:
    """The folder for data_root's derived files (see the module's docstring); not created here."""
    root = Path(data_root).resolve()  # one folder, one cache, however its path was spelled (../x, a link)
    chosen = os.environ.get(CACHE_ENV)
    if not chosen and can_hold(root / CACHE_DIR):
        return root / CACHE_DIR
    home = Path(chosen) if chosen else user_cache_home() / "mnist_gan"
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", root.name)[:40] or "root"
    return home / f"{readable}-{hashlib.sha256(os.fsencode(root)).hexdigest()[:12]}"


def user_cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def can_hold(folder: Path) -> bool:
    """A folder we may write in: writable, and marked so (root may write anywhere, but a folder without write bits
    is one its owner keeps read-only)."""
    target = folder if folder.exists() or folder.is_symlink() else folder.parent
    try:
        mode = target.lstat().st_mode
    except OSError:
        return False
    return stat.S_ISDIR(mode) and bool(mode & 0o222) and os.access(target, os.W_OK)


@contextlib.contextmanager
def locked(data_root: Path) -> Iterator[None]:
    """Hold a lock on the data folder itself (nothing is created: a read-only folder locks too), so that concurrent
    runs, and the ranks of one torchrun, decode once: the others wait, then read the cache."""
    try:
        import fcntl

        descriptor = os.open(data_root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):  # Windows, or a folder we cannot open: writes stay atomic all the same
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def save_array(path: Path, array: np.ndarray) -> None:
    """np.save under a unique temporary name renamed into place: a planted link is replaced, never written through."""
    with atomic_output(path) as temporary:
        np.save(temporary, array)


def load_array(path: Path, dtype: np.dtype, dimensions: int) -> np.ndarray | None:
    """A cached array as a copy-on-write memory map, or None when it is missing or not what we wrote (another
    dtype or shape: a foreign or damaged file is decoded again, never trusted)."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError) as error:
        log.warning(f"ignoring a damaged cache {path}: {error}")
        return None
    if array.dtype != dtype or array.ndim != dimensions:
        log.warning(f"ignoring a foreign cache {path}: {array.dtype} of {array.ndim} dimensions")
        return None
    return array


def remove_stale(folder: Path, pattern: str, current: str) -> None:
    """Delete the cached files matching pattern that were not made from the current contents (whose names lack
    `current`): an edited folder, or a new evaluator, leaves one cache, not one per edit."""
    for path in folder.glob(pattern):
        if current not in path.name and not path.is_dir():
            with contextlib.suppress(OSError):
                path.unlink()
