"""Training: one GAN step and the epoch loop, with logging, samples, evaluation, checkpoints, resume and signals."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import checkpoints
from .config import Config, merge_for_resume
from .data import batches_per_epoch, epoch_batches, load_dataset
from .devices import autocast, resolve_device, resolve_precision
from .errors import MnistGanError, TrainingDiverged, TrainingInterrupted
from .metrics import QualityMeter
from .reporting import Reporter
from .state import TrainingState, new_state, restore_state, state_payload


# ----------------------------------------------------------------------------------- the GAN step
def train_step(state: TrainingState, real: torch.Tensor, latent_dim: int, precision: torch.dtype) -> dict[str, float]:
    """One discriminator and one generator update with the non-saturating loss on logits."""
    generator, discriminator = state.generator, state.discriminator
    batch_size = real.shape[0]
    ones = torch.ones(batch_size, device=real.device)
    zeros = torch.zeros(batch_size, device=real.device)
    z = torch.randn(batch_size, latent_dim, device=real.device)

    # (1) Update D: maximise log D(x) + log(1 - D(G(z))). Real and fake go through D separately
    # so that BatchNorm never mixes their statistics.
    with autocast(real.device, precision):
        fake = generator(z)
        logits_real = discriminator(real).float()
        logits_fake = discriminator(fake.detach()).float()
    loss_d_real = F.binary_cross_entropy_with_logits(logits_real, ones)
    loss_d_fake = F.binary_cross_entropy_with_logits(logits_fake, zeros)
    loss_d = loss_d_real + loss_d_fake
    state.optimizer_d.zero_grad(set_to_none=True)
    loss_d.backward()
    state.optimizer_d.step()

    # (2) Update G: maximise log D(G(z)). D's weights are frozen: only the gradient w.r.t. its input is needed.
    discriminator.requires_grad_(False)
    with autocast(real.device, precision):
        logits_fake_for_g = discriminator(fake).float()
    loss_g = F.binary_cross_entropy_with_logits(logits_fake_for_g, ones)
    state.optimizer_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.optimizer_g.step()
    discriminator.requires_grad_(True)

    if state.ema is not None:
        state.ema.update_parameters(generator)
    return {
        "loss_d": loss_d.item(),
        "loss_g": loss_g.item(),
        "d_real": torch.sigmoid(logits_real).mean().item(),  # D(x)
        "d_fake": torch.sigmoid(logits_fake).mean().item(),  # D(G(z)) before D's update
    }


# ----------------------------------------------------------------------------------- the loop
def train(config: Config, reporter_factory: Callable[..., Reporter] = Reporter) -> Path:
    """Train a new run; returns its folder."""
    run_dir = Path(config.run_dir) if config.run_dir else new_run_dir()
    if checkpoints.list_checkpoints(run_dir):
        raise MnistGanError(f"{run_dir} already holds checkpoints; add --resume to continue it, or pick another --run-dir")
    config = Config.from_dict({**config.to_dict(), "run_dir": str(run_dir)})
    device = resolve_device(config.device)
    return fit(config, new_state(config, device), device, reporter_factory)


def resume(run_dir: str | Path, overrides: dict[str, Any], reporter_factory: Callable[..., Reporter] = Reporter,
           warn: Callable[[str], None] = print) -> Path:
    """Continue a run from its newest valid checkpoint, with the explicitly given flags applied."""
    path, payload = checkpoints.load_latest_valid(run_dir, warn=warn)
    saved = Config.from_dict(payload["config"])
    config, changes = merge_for_resume(saved, {**overrides, "run_dir": str(run_dir)})
    for name, (old, new) in changes.items():
        if name != "run_dir":
            warn(f"resuming with {name} changed from {old!r} to {new!r}")
    device = resolve_device(config.device)
    state = restore_state(payload, config, device)
    warn(f"resuming {path} at epoch {state.epoch}, batch {state.batches_done} (step {state.step})")
    return fit(config, state, device, reporter_factory)


def new_run_dir(root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir, suffix = root / stamp, 1
    while run_dir.exists():
        run_dir, suffix = root / f"{stamp}_{suffix}", suffix + 1
    return run_dir


def fit(config: Config, state: TrainingState, device: torch.device, reporter_factory: Callable[..., Reporter]) -> Path:
    run_dir = Path(config.run_dir)
    make_writable_dir(run_dir)
    precision = resolve_precision(config.precision, device)
    images, _ = load_dataset(config.dataset, config.data_dir, img_size=config.img_size, download=config.download)
    images = images.to(device)
    steps_per_epoch = batches_per_epoch(len(images), config.batch_size, config.max_batches)
    meter = QualityMeter(config.dataset, config.data_dir, device, download=config.download) if config.eval_every else None
    reporter = reporter_factory(run_dir, config, steps_per_epoch, precision)
    try:
        with StopSignals() as stop:
            while state.epoch < config.epochs:
                train_epoch(config, state, images, device, precision, reporter, stop)
                finish_epoch(config, state, reporter, meter)
        export_generator(config, state, run_dir)
        reporter.finish(state)
    finally:
        reporter.close()
    return run_dir


def train_epoch(config: Config, state: TrainingState, images: torch.Tensor, device: torch.device,
                precision: torch.dtype, reporter: Reporter, stop: StopSignals) -> None:
    """Train the rest of state.epoch; on SIGINT/SIGTERM save a mid-epoch checkpoint and raise."""
    reporter.start_epoch(state.epoch, state.batches_done)
    batches = epoch_batches(images, batch_size=config.batch_size, seed=config.seed, epoch=state.epoch,
                            start=state.batches_done, max_batches=config.max_batches)
    clock = time.perf_counter()
    for real in batches:
        stats = train_step(state, real, config.latent_dim, precision)
        state.elapsed += time.perf_counter() - clock  # wall time, including logging and samples
        clock = time.perf_counter()
        state.step += 1
        state.batches_done += 1
        if not all(math.isfinite(value) for value in stats.values()):
            raise TrainingDiverged(f"training diverged at step {state.step} (epoch {state.epoch}): {stats}; "
                                   f"the last good checkpoint is kept in {Path(config.run_dir) / checkpoints.CHECKPOINT_DIR}")
        reporter.log_step(state.step, stats, len(real))
        if config.sample_interval and state.step % config.sample_interval == 0:
            reporter.log_samples(f"step_{state.step:07d}", sample_grid(state), state.step)
        if stop.signal_number:
            save_interrupted(config, state, stop.signal_number)


def finish_epoch(config: Config, state: TrainingState, reporter: Reporter, meter: QualityMeter | None) -> None:
    """Samples from the fixed noise, the quality metrics when due, then the epoch's checkpoint (and best.pt)."""
    clock = time.perf_counter()
    finished = state.epoch
    reporter.log_samples(f"epoch_{finished}", sample_grid(state), state.step, epoch_grid=True)
    metrics, eval_seconds = None, 0.0
    if meter is not None and ((finished + 1) % config.eval_every == 0 or finished + 1 == config.epochs):
        eval_started = time.perf_counter()
        metrics = meter.score_generator(state.sampler, config.eval_samples, config.latent_dim)
        eval_seconds = time.perf_counter() - eval_started
    state.elapsed += time.perf_counter() - clock
    state.epoch, state.batches_done = finished + 1, 0
    if metrics is not None:
        record = {"epoch": finished, "step": state.step, "elapsed": round(state.elapsed, 2),
                  "eval_seconds": round(eval_seconds, 2), **metrics}
        reporter.log_metrics(record)
    payload = state_payload(state, config)
    if metrics is not None and metrics["fid"] < state.best_fid:
        state.best_fid = payload["best_fid"] = metrics["fid"]
        checkpoints.atomic_save(payload, Path(config.run_dir) / checkpoints.BEST_FILE)
    checkpoints.atomic_save(payload, checkpoints.checkpoint_path(Path(config.run_dir), finished))
    checkpoints.prune_checkpoints(config.run_dir, config.keep_last)
    reporter.end_epoch(finished, state, metrics)


def save_interrupted(config: Config, state: TrainingState, signal_number: int) -> None:
    path = checkpoints.checkpoint_path(Path(config.run_dir), state.epoch, state.batches_done)
    checkpoints.atomic_save(state_payload(state, config), path)
    name = signal.Signals(signal_number).name
    raise TrainingInterrupted(
        f"{name}: stopped at epoch {state.epoch}, batch {state.batches_done} (step {state.step}); saved {path}.\n"
        f"Resume with: python -m mnist_gan main --resume --run-dir {config.run_dir}", signal_number)


@torch.no_grad()
def sample_grid(state: TrainingState) -> torch.Tensor:
    """Images from the fixed noise, in [-1, 1], on the CPU."""
    sampler = state.sampler
    was_training = sampler.training
    sampler.eval()
    images = sampler(state.fixed_noise).float().cpu()
    sampler.train(was_training)
    return images


def export_generator(config: Config, state: TrainingState, run_dir: Path) -> None:
    weights = {name: tensor.cpu() for name, tensor in state.sampler.state_dict().items()}
    payload = checkpoints.generator_payload(config, weights, state.epoch)
    checkpoints.atomic_save(payload, run_dir / checkpoints.GENERATOR_FILE)


def make_writable_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise MnistGanError(f"cannot write to run directory {folder}: {error.strerror or error}") from None


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag checked after each step; a second one stops at once."""

    def __init__(self) -> None:
        self.signal_number = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for number in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[number] = signal.signal(number, self.handle)
            except ValueError:  # not the main thread: leave the default behaviour
                pass
        return self

    def handle(self, number: int, frame: Any) -> None:
        if self.signal_number:
            raise KeyboardInterrupt
        self.signal_number = number

    def __exit__(self, *exc_info: Any) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
