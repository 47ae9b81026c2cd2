"""The files mnist_gan writes and reads: training checkpoints, exported generators and evaluators.

Each is a dict saved with torch.save: {"format": NAME, "version": N, ...its fields}. One loader checks the
format, the version and the fields without running code (weights_only=True); each format's fields are
built, and read back, here and nowhere else.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .config import Config
from .errors import CheckpointError, ConfigError
from .files import save_torch
from .state import TrainingState, new_state

CHECKPOINT = "mnist_gan.checkpoint"  # everything needed to resume training
GENERATOR = "mnist_gan.generator"  # the (EMA) generator and its config, for sampling
EVALUATOR = "mnist_gan.evaluator"  # the metrics' classifier, its test accuracy and real-data reference
VERSIONS = {CHECKPOINT: 1, GENERATOR: 1, EVALUATOR: 1}  # raise one when its fields change incompatibly


def save(kind: str, fields: dict[str, Any], path: str | Path) -> None:
    """Write a file of this kind atomically (see files.save_torch)."""
    save_torch({"format": kind, "version": VERSIONS[kind], **fields}, path)


def load(path: str | Path, kinds: tuple[str, ...] = (CHECKPOINT, GENERATOR)) -> dict[str, Any]:
    """Load a file of one of these kinds and check its fields before anything is built from it, so a crafted
    file can neither crash us nor make us allocate gigabytes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if not zipfile.is_zipfile(path):  # torch.load's own message for such a file can be "list index out of range"
        raise CheckpointError(
            f"{path} is not a readable mnist_gan checkpoint: not a whole file written by torch.save (truncated, or "
            "a file of another kind)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged member of the archive, or a pickle that asks for code
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable mnist_gan checkpoint: {reason}") from None
    kind = payload.get("format") if isinstance(payload, dict) else None
    if kind not in kinds:
        raise CheckpointError(f"{path} is not an mnist_gan checkpoint (format {kind!r}, expected {' or '.join(kinds)})")
    version = payload.get("version")
    if type(version) is not int:
        raise CheckpointError(f"{path}: damaged checkpoint: version must be an integer, got {version!r}")
    if version > VERSIONS[kind]:
        raise CheckpointError(f"{path} was written by a newer mnist_gan ({kind} version {version})")
    if kind != EVALUATOR:
        try:
            Config.from_dict(payload.get("config"))
        except ConfigError as error:
            raise CheckpointError(f"{path}: damaged checkpoint: its config is invalid: {error}") from None
    required = {CHECKPOINT: ("generator", "discriminator"), GENERATOR: ("generator",), EVALUATOR: ("state_dict",)}
    optional = ("generator_ema",) if kind == CHECKPOINT else ()
    for key in required[kind] + optional:
        weights = payload.get(key)
        if (key in required[kind] or weights is not None) and not is_state_dict(weights):
            raise CheckpointError(
                f"{path}: damaged checkpoint: {key} must be a dict of tensors, got {type(weights).__name__}"
            )
    return payload


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


def is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items()
    )


def saved_config(payload: dict[str, Any]) -> Config:
    """The run configuration a loaded file holds (checked by load)."""
    return Config.from_dict(payload["config"])


def generator_weights(payload: dict[str, Any]) -> tuple[dict[str, torch.Tensor], int]:
    """The generator to sample from (the weight average when the file has one, as training exports it) and the
    epochs it was trained for, from a checkpoint or an exported generator."""
    weights = payload.get("generator_ema") or payload["generator"]
    return weights, int(payload.get("epochs_done", payload.get("epoch", 0)))


def training_time(payload: dict[str, Any]) -> float:
    """Seconds of training a checkpoint records, summed over resumes."""
    return float(payload["elapsed"])


# ----------------------------------------------------------------------------------- training checkpoint
def checkpoint_fields(state: TrainingState, config: Config) -> dict[str, Any]:
    """Models, optimizers, position, config, data fingerprint, fixed noise and RNG states."""
    return {
        "package_version": __version__,
        "config": config.to_dict(),
        "epoch": state.epoch,
        "batches_done": state.batches_done,
        "epochs_done": state.epoch,  # finished epochs: a finished epoch's checkpoint has epoch + 1, batches 0
        "step": state.step,
        "best_fid": state.best_fid,
        "elapsed": state.elapsed,
        "data": state.data,
        "world_size": state.world_size,
        "generator": state.generator.state_dict(),
        "discriminator": state.discriminator.state_dict(),
        "generator_ema": state.ema.module.state_dict() if state.ema is not None else None,
        "ema_updates": int(state.ema.n_averaged) if state.ema is not None else 0,
        "optimizer_g": state.optimizer_g.state_dict(),
        "optimizer_d": state.optimizer_d.state_dict(),
        "fixed_noise": state.fixed_noise.cpu(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_checkpoint(payload: dict[str, Any], config: Config, device: torch.device) -> TrainingState:
    """The training state a checkpoint holds, with `config`'s learning rate and betas (a resume may change them),
    and the Adam kernel this device runs (the checkpoint may come from another)."""
    state = new_state(config, device)
    state.generator.load_state_dict(payload["generator"])
    state.discriminator.load_state_dict(payload["discriminator"])
    if state.ema is not None and payload.get("generator_ema") is not None:
        state.ema.module.load_state_dict(payload["generator_ema"])
        state.ema.n_averaged.fill_(payload["ema_updates"])
    for optimizer, name, lr in ((state.optimizer_g, "optimizer_g", config.lr),
                                (state.optimizer_d, "optimizer_d", config.lr_discriminator)):  # fmt: skip
        kernel = {key: optimizer.defaults[key] for key in ("fused", "foreach")}
        optimizer.load_state_dict(payload[name])
        for group in optimizer.param_groups:
            group.update(lr=lr, betas=(config.b1, config.b2), **kernel)
    state.fixed_noise = payload["fixed_noise"].to(device)
    state.epoch, state.batches_done, state.step = payload["epoch"], payload["batches_done"], payload["step"]
    state.best_fid, state.elapsed, state.data = payload["best_fid"], payload["elapsed"], payload.get("data", "")
    world_size = payload.get("world_size", 0)
    state.world_size = world_size if type(world_size) is int and world_size > 0 else 0
    torch.set_rng_state(payload["rng_cpu"])
    if device.type == "cuda" and payload["rng_cuda"]:
        torch.cuda.set_rng_state_all(payload["rng_cuda"])
    return state


# ----------------------------------------------------------------------------------- exported generator, evaluator
def generator_fields(config: Config, generator: nn.Module, epochs_done: int) -> dict[str, Any]:
    """The weights and the config needed to rebuild the generator, nothing else."""
    weights = {name: tensor.cpu() for name, tensor in generator.state_dict().items()}
    return {"config": config.to_dict(), "generator": weights, "epochs_done": epochs_done}


def evaluator_fields(evaluator: nn.Module, **metadata: Any) -> dict[str, Any]:
    """The classifier's weights, its shape and what is known about it (dataset, test accuracy, real-data
    reference, a folder's class names)."""
    return {"state_dict": evaluator.state_dict(), "shape": evaluator.shape, **metadata}


# files before RGB datasets: MNIST's classifier; before the third block: two
EVALUATOR_SHAPE = {"channels": 1, "num_classes": 10, "size": 28, "blocks": 2}


def evaluator_parts(payload: dict[str, Any], path: str | Path) -> tuple[dict[str, int], dict, dict[str, Any]]:
    """(shape, weights, metadata) of a loaded evaluator file, each field checked: a crafted file can neither
    crash us nor make us allocate gigabytes."""
    shape = {**EVALUATOR_SHAPE, **payload.get("shape", {})} if isinstance(payload.get("shape", {}), dict) else None
    if not (shape and shape.keys() == EVALUATOR_SHAPE.keys() and shape["channels"] in (1, 3)
            and shape["size"] in (28, 32) and shape["blocks"] in (2, 3) and type(shape["blocks"]) is int
            and type(shape["num_classes"]) is int
            and 2 <= shape["num_classes"] <= 1000):  # fmt: skip
        raise CheckpointError(f"{path} is not an evaluator file: its shape {payload.get('shape')!r} is not one "
                              "mnist_gan builds")  # fmt: skip
    classes = payload.get("classes")
    if not (classes is None or isinstance(classes, list) and all(isinstance(name, str) for name in classes)):
        raise CheckpointError(f"{path} is not an evaluator file: its classes {classes!r} are not a list of names")
    metadata = {key: value for key, value in payload.items() if key != "state_dict"}
    return shape, payload["state_dict"], metadata
