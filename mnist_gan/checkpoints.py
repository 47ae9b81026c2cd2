"""Checkpoints and exported generators: written atomically, loaded safely and validated, found by position."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from . import runs
from .config import Config
from .errors import CheckpointError, ConfigError
from .files import save_torch
from .models import build_models
from .runs import BEST_FILE, CHECKPOINT_DIR, GENERATOR_FILE

FORMAT_VERSION = 1
CHECKPOINT_FORMAT = "mnist_gan.checkpoint"
GENERATOR_FORMAT = "mnist_gan.generator"
# epoch_003.pt: epoch 3 finished; epoch_003_batch_00120.pt: interrupted after 120 batches of epoch 3.
NAME_PATTERN = re.compile(r"epoch_(\d+)(?:_batch_(\d+))?\.pt")


def checkpoint_path(run_dir: Path, epoch: int, batches_done: int | None = None) -> Path:
    """Where a checkpoint of this position goes; batches_done None means the epoch is finished."""
    name = f"epoch_{epoch:03d}.pt" if batches_done is None else f"epoch_{epoch:03d}_batch_{batches_done:05d}.pt"
    return Path(run_dir) / CHECKPOINT_DIR / name


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """Write beside `path`, fsync, rename: a crash or a full disk never leaves a partial file at `path`."""
    save_torch(payload, path)


def load_file(path: str | Path, expected: tuple[str, ...] = (CHECKPOINT_FORMAT, GENERATOR_FORMAT)) -> dict[str, Any]:
    """Load a checkpoint or generator file without executing code (weights_only=True) and check its fields.

    Its config is validated (types and sizes) before anything is built from it, so a crafted file can
    neither crash us nor make us allocate gigabytes.
    """
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
        raise CheckpointError(
            f"{path} is not an mnist_gan checkpoint (format {kind!r}, expected {' or '.join(expected)})"
        )
    version = payload.get("version")
    if type(version) is not int:
        raise CheckpointError(f"{path}: damaged checkpoint: version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer mnist_gan (format version {version})")
    try:
        Config.from_dict(payload.get("config"))
    except ConfigError as error:
        raise CheckpointError(f"{path}: damaged checkpoint: its config is invalid: {error}") from None
    for key in ("generator", "generator_ema") if kind == CHECKPOINT_FORMAT else ("generator",):
        weights = payload.get(key)
        if (key == "generator" or weights is not None) and not is_state_dict(weights):
            raise CheckpointError(
                f"{path}: damaged checkpoint: {key} must be a dict of tensors, got {type(weights).__name__}"
            )
    return payload


def is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items()
    )


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
    """The file to sample from: --checkpoint, else the run's best (if asked) or latest checkpoint."""
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
    payload = load_file(path)
    config = Config.from_dict(payload["config"])
    weights = payload.get("generator_ema") or payload["generator"]
    generator = load_weights(build_models(config)[0], weights, path, f"a {config.arch} generator")
    return generator.to(device).eval(), config, int(payload.get("epochs_done", payload.get("epoch", 0)))


def load_weights(
    model: torch.nn.Module, weights: dict[str, torch.Tensor], path: str | Path, what: str
) -> torch.nn.Module:
    """load_state_dict with the whole mismatch in the message, refusing NaN or infinite weights."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines()[1:]) or str(error)
        raise CheckpointError(f"{path}: weights do not fit {what}: {detail}") from None
    broken = [
        name for name, tensor in weights.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if broken:
        raise CheckpointError(
            f"{path}: {what} has NaN or infinite weights ({', '.join(broken[:3])}); "
            f"it cannot make images: use an earlier checkpoint"
        )
    return model


def generator_payload(config: Config, weights: dict[str, torch.Tensor], epochs_done: int) -> dict[str, Any]:
    """The exported generator: weights and the config needed to rebuild it, nothing else."""
    return {
        "format": GENERATOR_FORMAT,
        "version": FORMAT_VERSION,
        "config": config.to_dict(),
        "generator": weights,
        "epochs_done": epochs_done,
    }
