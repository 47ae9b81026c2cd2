"""Writing files safely: every output is written beside its target and renamed into place, never half-written."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import OutputError

TEMPORARY_MARK = ".tmp"  # in the name of every temporary file, so a crash's leftovers can be found and removed


def temporary_path(path: Path) -> Path:
    """A hidden, unique name beside `path` that keeps its suffix (numpy and PIL pick the format from it)."""
    return path.parent / f".{path.stem}.{uuid.uuid4().hex[:12]}{TEMPORARY_MARK}{path.suffix}"


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is fsynced and renamed over `path`.

    Whatever goes wrong (full disk, interrupt, a bug), `path` keeps its old content and no temporary is left.
    rename() replaces a planted symlink at `path` instead of writing through it.
    """
    path = Path(path)
    make_parent(path)
    temporary = temporary_path(path)
    try:
        yield temporary
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):  # full disk, read-only folder, quota...
            raise OutputError(f"could not write {path}: {describe(error)}; nothing was overwritten") from None
        raise
    sync_directory(path.parent)  # make the rename itself durable


def save_torch(payload: dict[str, Any], path: str | Path) -> None:
    """torch.save, atomically. Serialised in memory first: torch's zip writer reports a full disk as a
    RuntimeError ("unexpected pos"), a plain write reports it as the OSError it is."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_output(path) as temporary:
        with open(temporary, "xb") as file:
            file.write(buffer.getbuffer())


def write_text(path: str | Path, text: str) -> None:
    with atomic_output(path) as temporary:
        Path(temporary).write_text(text)


def append_line(path: Path, line: str) -> None:
    """Append one line, refusing to follow a symlink planted at `path`."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags, 0o644)
        with os.fdopen(descriptor, "a") as file:
            file.write(line + "\n")
    except OSError as error:
        raise OutputError(f"could not write {path}: {describe(error)}") from None


def make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"could not create the folder {path.parent}: {describe(error)}") from None


def check_output(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    """Fail before any work if `path` cannot be written: a wrong suffix, a folder in its place, a read-only
    file, a file as its parent, or a folder that refuses new files (probed with a real file, so root and
    read-only mounts are judged right)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{path}: the name must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name ending in {' or '.join(suffixes)}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path} is read-only")
    existing = next(parent for parent in path.absolute().parents if parent.exists())
    if not existing.is_dir():
        raise OutputError(f"{path}: {existing} is a file, not a folder")
    probe_writable(existing, str(path))
    return path


def probe_writable(folder: Path, what: str) -> None:
    """Create and remove a uniquely named file: O_EXCL never follows or truncates a planted symlink."""
    probe = folder / f".probe-{uuid.uuid4().hex[:12]}{TEMPORARY_MARK}"
    try:
        descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.close(descriptor)
        probe.unlink()
    except OSError as error:
        raise OutputError(f"{what}: cannot write to {folder}: {describe(error)}") from None


def sync_directory(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):  # not on Windows
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def describe(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    return error.strerror or str(error)
