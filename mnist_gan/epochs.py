"""The epoch loop: steps, statistics, sample grids, evaluations and checkpoints, until the last epoch, the time
budget or a stop signal. trainer.py sets a run up and hands it here as a Session."""

from __future__ import annotations

import logging
import math
import shlex
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoints, distributed, formats, runs
from .config import Config
from .data import batches_per_epoch, epoch_batches
from .errors import TrainingDiverged, TrainingInterrupted
from .metrics import EVAL_SEED, Meter, sample_shares
from .reporting import Reporter
from .sampling import draw, scoring_sample
from .signals import EvaluationStopped, StopSignals
from .state import BATCHNORM_IMAGES, TrainingState, measure_batchnorm
from .step import set_learning_rates, training_step

log = logging.getLogger(__name__)


@dataclass
class Session:
    """One run as the loop works on it: its settings, state, training data (on the device), precision and
    outputs; `stop` holds the signal that arrived, if any."""

    config: Config
    state: TrainingState
    data: tuple[torch.Tensor, torch.Tensor]
    precision: torch.dtype
    reporter: Reporter
    meters: list[Meter]
    stop: StopSignals = field(default_factory=StopSignals)

    @property
    def writes(self) -> bool:
        """Rank 0 writes everything a run leaves; under torchrun the other ranks only train."""
        return distributed.is_main()


@dataclass
class StatsWindow:
    """The step statistics since the last read, summed on the device: reading them is one host sync."""

    totals: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        self.totals = {name: value + self.totals.get(name, 0) for name, value in stats.items()}
        self.steps += 1

    def read(self, session: Session) -> dict[str, float]:
        """The window's means, then a fresh window. Non-finite ones end the run before anything is saved from it."""
        if not self.totals:
            return {}
        means = dict(zip(self.totals, (torch.stack(list(self.totals.values())) / self.steps).tolist(), strict=True))
        step, steps = session.state.step, self.steps
        self.totals, self.steps = {}, 0
        if not all(math.isfinite(value) for value in means.values()):
            when = f"at step {step}" if steps == 1 else f"between step {step - steps + 1} and step {step}"
            raise TrainingDiverged(
                f"training diverged {when} (epoch {session.state.epoch}): {means}; "
                f"the last good checkpoint is kept in {Path(session.config.run_dir) / runs.CHECKPOINT_DIR}"
            )
        return means


def loop(session: Session) -> None:
    """Epochs until the last, the time budget or a signal; then the exported generator."""
    config, state = session.config, session.state
    if budget_spent(session):
        log.warning(f"the time budget of {config.time_budget:g} min is already spent; pass a larger --time-budget or 0")
    # A dead peer's error is made while a signal only sets a flag: torchrun's SIGTERM follows it closely.
    with session.stop, distributed.peer_errors():
        while state.epoch < config.epochs and not budget_spent(session):
            complete = train_epoch(session)
            saved = finish_epoch(session, complete)
            # every rank leaves with the same clock, for the same reason (a no-op in one process)
            device = session.data[0].device
            state.elapsed, session.stop.signal_number = distributed.agree(
                state.elapsed, session.stop.signal_number, device
            )
            if session.stop.signal_number:  # arrived during the samples, the evaluation or the checkpoint
                raise interrupted(session, saved)
    if session.writes:
        fields = formats.generator_fields(config, state.sample_generator, state.epoch)
        formats.save(formats.GENERATOR, fields, Path(config.run_dir) / runs.GENERATOR_FILE)
    distributed.barrier()
    session.reporter.finish(state)


def budget_spent(session: Session) -> bool:
    """--time-budget counts the run's training time, summed over resumes (state.elapsed)."""
    budget = session.config.time_budget
    return bool(budget) and session.state.elapsed >= budget * 60


def train_epoch(session: Session) -> bool:
    """Train the rest of state.epoch; True if it ended, False if the time budget ran out first. On SIGINT/SIGTERM
    save a mid-epoch checkpoint and raise.

    Under torchrun the ranks agree every --log-every steps on the clock and on any stop signal, so all of them
    stop at the same step; in one process that happens every step."""
    config, state, reporter = session.config, session.state, session.reporter
    reporter.start_epoch(state.epoch, state.batches_done)
    world = distributed.world_size()
    total_steps = config.epochs * batches_per_epoch(len(session.data[0]), config.batch_size * world,
                                                    config.max_batches)  # fmt: skip
    window, clock, unsynced = StatsWindow(), time.perf_counter(), 0.0  # unsynced: seconds not yet in state.elapsed
    for real, labels in batches(session):
        set_learning_rates(state, config, total_steps)
        window.add(training_step(state, config, session.precision, real, labels))
        unsynced, clock = unsynced + time.perf_counter() - clock, time.perf_counter()
        state.batches_done += 1
        reporter.advance(len(real) * world)
        if state.step % config.log_every == 0:
            reporter.log_step(state.step, window.read(session), state.elapsed + unsynced)
        if session.writes and config.sample_interval and state.step % config.sample_interval == 0:
            reporter.log_samples(runs.step_grid(state.step), fixed_noise_grid(state), state.step)
        if world > 1 and state.step % config.log_every:
            continue
        state.elapsed, session.stop.signal_number = distributed.agree(
            state.elapsed + unsynced, session.stop.signal_number, real.device
        )
        unsynced = 0.0
        if budget_spent(session) or session.stop.signal_number:
            window.read(session)  # about to save: never a diverged state
        if budget_spent(session):
            return False  # finish_epoch evaluates and saves this position; loop() then ends the run
        if session.stop.signal_number:
            raise interrupted(session, save_mid_epoch(session))
    state.elapsed += unsynced
    window.read(session)
    return True


def batches(session: Session) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The rest of the epoch's batches for this rank; channels-last for the DCGAN on a GPU."""
    config, state = session.config, session.state
    channels_last = session.data[0].device.type == "cuda" and config.arch == "dcgan"
    for real, labels in epoch_batches(*session.data, batch_size=config.batch_size, seed=config.seed,
                                      epoch=state.epoch, start=state.batches_done, max_batches=config.max_batches,
                                      rank=distributed.rank(), world_size=distributed.world_size()):  # fmt: skip
        yield (real.contiguous(memory_format=torch.channels_last) if channels_last else real), labels


def save_mid_epoch(session: Session) -> Path:
    """The checkpoint a stop signal asks for, at this step; no rank leaves before it is whole."""
    state = session.state
    path = checkpoints.checkpoint_path(Path(session.config.run_dir), state.epoch, state.batches_done)
    if session.writes:
        formats.save(formats.CHECKPOINT, formats.checkpoint_fields(state, session.config), path)
    distributed.barrier()  # no rank exits (and makes torchrun stop the rest) before the checkpoint is whole
    return path


def finish_epoch(session: Session, complete: bool) -> Path:
    """The weight average's BatchNorm statistics, samples from the fixed noise, the quality metrics when due, then
    the epoch's checkpoint (and best.pt).

    When the time budget ran out inside the epoch, the same happens at that position (a mid-epoch checkpoint that
    --resume continues), with the final evaluation. A signal during the evaluation abandons it: the checkpoint is
    what must be saved before a supervisor's grace period ends. Returns the checkpoint's path.
    """
    config, state = session.config, session.state
    clock, epoch = time.perf_counter(), state.epoch
    last = budget_spent(session) or (complete and epoch + 1 == config.epochs)
    if state.ema is not None:  # before anything is drawn from it or saved
        measure_average_batchnorm(session)
    if session.writes:
        name = runs.epoch_grid(epoch) if complete else runs.step_grid(state.step)
        session.reporter.log_samples(name, fixed_noise_grid(state), state.step, epoch_grid=complete)
    due = session.meters and (last or (complete and (epoch + 1) % config.eval_every == 0))
    metrics, eval_seconds = evaluate(session) if due else (None, 0.0)
    state.elapsed += time.perf_counter() - clock
    if complete:
        state.epoch, state.batches_done = epoch + 1, 0
    if metrics is not None:
        session.reporter.log_metrics({"epoch": epoch, "step": state.step, "elapsed": round(state.elapsed, 2),
                                      "eval_seconds": round(eval_seconds, 2), **metrics})  # fmt: skip
    path = save_epoch(session, metrics, None if complete else state.batches_done, epoch)
    session.reporter.end_epoch(epoch, state, metrics)
    return path


def measure_average_batchnorm(session: Session) -> None:
    """The weight average's BatchNorm statistics, measured on its weights (state.measure_batchnorm) on at most as
    many images as an epoch trains: a few seconds of a real run, never most of a short one."""
    config, (images, labels) = session.config, session.data
    epoch_images = config.batch_size * batches_per_epoch(len(images), config.batch_size, config.max_batches)
    measure_batchnorm(session.state.ema.module, config.latent_dim, config.batch_size,
                      labels if config.conditional else None, images=min(BATCHNORM_IMAGES, epoch_images))  # fmt: skip


def evaluate(session: Session) -> tuple[dict | None, float]:
    """Every meter on one sample of the generator (None when a signal abandoned it), and the seconds it took."""
    started = time.perf_counter()
    try:
        with session.stop.evaluation():
            images, labels = scoring_sample(session.state.sample_generator, session.config.eval_samples,
                                            session.config.latent_dim, EVAL_SEED,
                                            sample_shares(session.meters))  # fmt: skip
            metrics: dict | None = {}
            for meter in session.meters:
                metrics |= meter.score(images, labels)
    except EvaluationStopped:
        metrics = None
    return metrics, time.perf_counter() - started


def save_epoch(session: Session, metrics: dict | None, batches_done: int | None, epoch: int) -> Path:
    """The epoch's checkpoint first (the resumable one matters most on a full disk), then best.pt when the FID
    (the evaluator's, else Inception's) improved, then pruning."""
    config, state = session.config, session.state
    fields = formats.checkpoint_fields(state, config)
    fid = None if metrics is None else metrics.get("fid", metrics.get("inception_fid"))
    improved = fid is not None and fid < state.best_fid
    if improved:
        state.best_fid = fields["best_fid"] = fid
    path = checkpoints.checkpoint_path(Path(config.run_dir), epoch, batches_done)
    if session.writes:
        formats.save(formats.CHECKPOINT, fields, path)
        if improved:
            formats.save(formats.CHECKPOINT, fields, Path(config.run_dir) / runs.BEST_FILE)
        checkpoints.prune_checkpoints(config.run_dir, config.keep_last)
    return path


def interrupted(session: Session, saved: Path) -> TrainingInterrupted:
    state, number = session.state, session.stop.signal_number
    world = distributed.world_size()
    launcher = f"torchrun --nproc-per-node {world}" if world > 1 else "python"  # one rank's share of a batch stays
    return TrainingInterrupted(
        f"{signal.Signals(number).name}: stopped at epoch {state.epoch}, batch {state.batches_done} (step "
        f"{state.step}); saved {saved}.\nResume with: {launcher} -m mnist_gan main --resume --run-dir "
        f"{shlex.quote(session.config.run_dir)}",
        number,
    )


def fixed_noise_grid(state: TrainingState) -> torch.Tensor:
    """Images from the fixed noise, in [-1, 1], on the CPU; a conditional generator draws its classes in turn."""
    return draw(state.sample_generator, state.fixed_noise)
