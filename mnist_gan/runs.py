"""The run folder: what it holds and under which names, how a new one is made, which is newest, and its lock."""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path

from .errors import MnistGanError, RunInUse
from .files import TEMPORARY_MARK, probe_writable, write_text

log = logging.getLogger(__name__)
RUNS_ROOT = Path("runs")
CHECKPOINT_DIR = "checkpoints"  # epoch_003.pt, epoch_003_batch_00120.pt
IMAGES_DIR = "images"  # epoch_0.png ..., step_0000200.png ... (epoch_grid, step_grid)
GENERATOR_FILE = "generator.pth"
BEST_FILE = "best.pt"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
EVENTS_PATTERN = "events.out.tfevents.*"
OUTPUTS = (CHECKPOINT_DIR, IMAGES_DIR, GENERATOR_FILE, BEST_FILE, METRICS_FILE)


EPOCH_GRID = re.compile(r"epoch_(\d+)\.png")  # a run's grid after each epoch, numbered from 0


def epoch_grid(epoch: int) -> str:
    """The name (without .png) of the fixed-noise grid after an epoch."""
    return f"epoch_{epoch}"


def step_grid(step: int) -> str:
    """The name of a grid saved within an epoch, at a step."""
    return f"step_{step:07d}"


def epoch_grids(run_dir: Path) -> list[tuple[int, Path]]:
    """A run's per-epoch grids, (epoch, path) in epoch order."""
    folder = Path(run_dir) / IMAGES_DIR
    return sorted(
        (int(match[1]), path) for path in folder.glob("epoch_*.png") if (match := EPOCH_GRID.fullmatch(path.name))
    )


def new_run_dir(root: Path = RUNS_ROOT) -> Path:
    """runs/<date_time> (with a suffix if taken); only a name: the folder is made when training starts."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir, suffix = root / stamp, 1
    while run_dir.exists():
        run_dir, suffix = root / f"{stamp}_{suffix}", suffix + 1
    return run_dir


def run_outputs(run_dir: Path) -> list[str]:
    """The names of the run outputs already in a folder (empty for a fresh one)."""
    found = [name for name in OUTPUTS if os.path.lexists(run_dir / name)]
    return found + sorted(path.name for path in run_dir.glob(EVENTS_PATTERN))


def is_run(folder: Path) -> bool:
    return folder.is_dir() and ((folder / CHECKPOINT_DIR).is_dir() or (folder / GENERATOR_FILE).is_file())


def last_modified(run_dir: Path) -> float:
    """A run's last activity: its folder or its checkpoints folder, whichever changed last."""
    return max(path.stat().st_mtime for path in (run_dir, run_dir / CHECKPOINT_DIR) if path.exists())


def newest_run(root: str | Path = RUNS_ROOT) -> Path:
    """The run under `root` with the most recent activity (a new checkpoint, a new file), whatever its name."""
    root = Path(root)
    runs = [path for path in root.iterdir() if is_run(path)] if root.is_dir() else []
    if not runs:
        raise MnistGanError(f"no runs in {root}/; train one with `python -m mnist_gan main` or pass --run-dir")
    return max(runs, key=last_modified)


def check_run_dir(run_dir: Path, resuming: bool) -> None:
    """Refuse a folder that holds another run's outputs (unless resuming it), or planted symlinks."""
    found = run_outputs(run_dir) if not resuming and run_dir.exists() else []
    if found:
        raise MnistGanError(
            f"{run_dir} already holds a run ({', '.join(found[:4])}); "
            f"add --resume to continue it, or pick another --run-dir"
        )
    for name in (CHECKPOINT_DIR, IMAGES_DIR, METRICS_FILE, LOCK_FILE):
        if (run_dir / name).is_symlink():  # writing or pruning through it would touch files elsewhere
            raise MnistGanError(f"{run_dir / name} is a symbolic link; a run folder's own files must be real")


def prepare_run_dir(run_dir: Path, resuming: bool) -> None:
    """Check the folder again (time has passed) and create it: only now, once training can start."""
    check_run_dir(run_dir, resuming)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MnistGanError(f"cannot write to run directory {run_dir}: {error.strerror or error}") from None
    probe_writable(run_dir, "--run-dir")


def remove_temporaries(run_dir: Path) -> None:
    """Delete the temporary files a killed process left (they are never read)."""
    leftovers = [
        path
        for folder in (run_dir, run_dir / CHECKPOINT_DIR, run_dir / IMAGES_DIR)
        for path in folder.glob(f".*{TEMPORARY_MARK}*")
        if path.is_file() and not path.is_symlink()
    ]
    for path in leftovers:
        path.unlink(missing_ok=True)


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl's records; a line a killed process left half-written is skipped."""
    path = run_dir / METRICS_FILE
    records = []
    for number, line in enumerate(path.read_text().splitlines() if path.is_file() else [], start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if line.strip():
                log.warning(f"{path}: line {number} is incomplete and was skipped")
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """Keep only the records of epochs the checkpoint has: a resumed run writes the later ones again."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return
    kept = [
        record
        for record in read_metrics(run_dir)
        if isinstance(record.get("epoch"), int) and record["epoch"] < epochs_done
    ]
    write_text(path, "".join(json.dumps(record) + "\n" for record in kept))


class RunLock:
    """An exclusive lock on a run folder, held while a process trains in it.

    flock() is released by the kernel when the holder dies, so a lock left by a killed process is free
    and simply taken over. (filelock, the usual library, opens its file with O_TRUNC and follows a planted
    symlink; this opens with O_NOFOLLOW.)
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self.descriptor: int | None = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; runs are not protected against a second process
            return self
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as error:
            raise MnistGanError(f"cannot lock {self.path}: {error.strerror or error}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(descriptor, 64).decode(errors="replace").strip() or "another process"
            os.close(descriptor)
            raise RunInUse(
                f"{self.path.parent} is in use by process {holder}; wait for it to finish or stop it, then try again"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self.descriptor = descriptor
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # closing releases the lock
            self.descriptor = None
