"""Checkpoints and exported generators: written atomically, loaded safely, found by position."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import torch

from .config import Config
from .errors import CheckpointError
from .models import build_models

FORMAT_VERSION = 1
CHECKPOINT_FORMAT = "mnist_gan.checkpoint"
GENERATOR_FORMAT = "mnist_gan.generator"
CHECKPOINT_DIR = "checkpoints"
GENERATOR_FILE = "generator.pth"
BEST_FILE = "best.pt"
# epoch_003.pt: epoch 3 finished; epoch_003_batch_00120.pt: interrupted after 120 batches of epoch 3.
NAME_PATTERN = re.compile(r"epoch_(\d+)(?:_batch_(\d+))?\.pt")


def checkpoint_path(run_dir: Path, epoch: int, batches_done: int | None = None) -> Path:
    """Where a checkpoint of this position goes; batches_done None means the epoch is finished."""
    name = f"epoch_{epoch:03d}.pt" if batches_done is None else f"epoch_{epoch:03d}_batch_{batches_done:05d}.pt"
    return Path(run_dir) / CHECKPOINT_DIR / name


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: a crash never leaves a partial file at `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"could not create {path.parent}: {error.strerror or error}") from None
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"  # hidden, never matches NAME_PATTERN
    try:
        with open(temporary, "xb") as file:  # unlike mkstemp, respects the umask
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)  # never leave a partial file behind, whatever went wrong
        if isinstance(error, OSError):  # full disk, read-only folder, quota...
            raise CheckpointError(f"could not write {path}: {error.strerror or error}; earlier checkpoints are intact") from None
        raise
    sync_directory(path.parent)  # make the rename itself durable


def sync_directory(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):  # not on Windows
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def load_file(path: str | Path, expected: tuple[str, ...] = (CHECKPOINT_FORMAT, GENERATOR_FORMAT)) -> dict[str, Any]:
    """Load a checkpoint or generator file without executing code (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, garbage, or a pickle that asks for code
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable mnist_gan checkpoint: {reason}") from None
    kind = payload.get("format") if isinstance(payload, dict) else None
    if kind not in expected:
        raise CheckpointError(f"{path} is not an mnist_gan checkpoint (format {kind!r}, expected {' or '.join(expected)})")
    if payload.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer mnist_gan (format version {payload['version']})")
    return payload


def position(path: Path) -> tuple[int, float]:
    """Sort key: (epoch, batches done), a finished epoch after all its interrupted checkpoints."""
    match = NAME_PATTERN.fullmatch(path.name)
    assert match is not None
    return int(match[1]), float(match[2]) if match[2] is not None else float("inf")


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Completed checkpoints of a run, oldest first (temporary files never match the pattern)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [path for path in folder.glob("epoch_*.pt") if NAME_PATTERN.fullmatch(path.name)]
    return sorted(found, key=position)


def latest_checkpoint(run_dir: str | Path) -> Path:
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint in {Path(run_dir) / CHECKPOINT_DIR}")
    return found[-1]


def load_latest_valid(run_dir: str | Path, warn=print) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that loads; broken newer ones are skipped with a warning."""
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise CheckpointError(f"no checkpoint in {Path(run_dir) / CHECKPOINT_DIR} to resume from")
    for path in reversed(candidates):
        try:
            return path, load_file(path, (CHECKPOINT_FORMAT,))
        except CheckpointError as error:
            warn(f"skipping broken checkpoint: {error}")
    raise CheckpointError(f"no valid checkpoint in {Path(run_dir) / CHECKPOINT_DIR}")


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest keep_last checkpoints (0 keeps all); best.pt and generator.pth are separate files."""
    if keep_last:
        for path in list_checkpoints(run_dir)[:-keep_last]:
            path.unlink(missing_ok=True)


def resolve_source(checkpoint: str | Path | None, run_dir: str | Path | None, runs_root: str | Path = "runs",
                   prefer_best: bool = False) -> Path:
    """The file to sample from: --checkpoint, else the run's best (if asked) or latest checkpoint."""
    if checkpoint:
        return Path(checkpoint)
    run = Path(run_dir) if run_dir else newest_run(runs_root)
    if prefer_best and (run / BEST_FILE).is_file():
        return run / BEST_FILE
    found = list_checkpoints(run)
    if found:
        return found[-1]
    if (run / GENERATOR_FILE).is_file():
        return run / GENERATOR_FILE
    raise CheckpointError(f"no checkpoint in {run}; train one with `python -m mnist_gan main --run-dir {run}`")


def newest_run(runs_root: str | Path = "runs") -> Path:
    """The most recently started run under runs/ (folder names are timestamps)."""
    root = Path(runs_root)
    runs = sorted(path for path in root.glob("*") if path.is_dir()) if root.is_dir() else []
    if not runs:
        raise CheckpointError(f"no runs in {root}/; train one with `python -m mnist_gan main` or pass --run-dir")
    return runs[-1]


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Config, int]:
    """(generator in eval mode, its config, epochs trained) from a checkpoint or an exported generator.pth.

    A checkpoint with a weight average (EMA) gives the averaged generator, as training exports it.
    """
    payload = load_file(path)
    config = Config.from_dict(payload["config"])
    generator, _ = build_models(config)
    weights = payload.get("generator_ema") or payload["generator"]
    try:
        generator.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit a {config.arch} generator ({str(error).splitlines()[0]})") from None
    return generator.to(device).eval(), config, int(payload.get("epochs_done", payload.get("epoch", 0)))


def generator_payload(config: Config, weights: dict[str, torch.Tensor], epochs_done: int) -> dict[str, Any]:
    """The exported generator: weights and the config needed to rebuild it, nothing else."""
    return {"format": GENERATOR_FORMAT, "version": FORMAT_VERSION, "config": config.to_dict(),
            "generator": weights, "epochs_done": epochs_done}
