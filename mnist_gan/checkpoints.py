"""A run's checkpoints: their names and order, pruning, which file to sample from, and loading a generator."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from . import formats, runs
from .config import Config
from .errors import CheckpointError
from .models import build_models
from .runs import BEST_FILE, CHECKPOINT_DIR, GENERATOR_FILE

# epoch_003.pt: epoch 3 finished; epoch_003_batch_00120.pt: interrupted after 120 batches of epoch 3.
NAME_PATTERN = re.compile(r"epoch_(\d+)(?:_batch_(\d+))?\.pt")


def checkpoint_path(run_dir: Path, epoch: int, batches_done: int | None = None) -> Path:
    """Where a checkpoint of this position goes; batches_done None means the epoch is finished."""
    name = f"epoch_{epoch:03d}.pt" if batches_done is None else f"epoch_{epoch:03d}_batch_{batches_done:05d}.pt"
    return Path(run_dir) / CHECKPOINT_DIR / name


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


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest keep_last checkpoints (0 keeps all); best.pt and generator.pth are separate files."""
    if keep_last:
        for path in list_checkpoints(run_dir)[:-keep_last]:
            path.unlink(missing_ok=True)


def resolve_source(checkpoint: str | Path | None, run_dir: str | Path | None, prefer_best: bool = False) -> Path:
    """The file to sample from: --checkpoint, else the run's best (if asked: what `evaluate` scores, and what
    `generate` draws, since on some data the last epochs are worse) or latest checkpoint."""
    if checkpoint:
        return Path(checkpoint)
    run = Path(run_dir) if run_dir else runs.newest_run()
    if prefer_best and (run / BEST_FILE).is_file():
        return run / BEST_FILE
    found = list_checkpoints(run)
    if found:
        return found[-1]
    if (run / GENERATOR_FILE).is_file():
        return run / GENERATOR_FILE
    raise CheckpointError(f"no checkpoint in {run}; train one with `python -m mnist_gan main --run-dir {run}`")


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Config, int]:
    """(generator in eval mode, its config, epochs trained) from a checkpoint or an exported generator.pth.

    A checkpoint with a weight average (EMA) gives the averaged generator, as training exports it.
    """
    payload = formats.load(path)
    config = formats.saved_config(payload)
    weights, epochs_done = formats.generator_weights(payload)
    generator = formats.load_weights(build_models(config)[0], weights, path, f"a {config.arch} generator")
    return generator.to(device).eval(), config, epochs_done
