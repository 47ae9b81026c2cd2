"""Training: one GAN step and the epoch loop, with logging, samples, evaluation, checkpoints, resume and signals."""

from __future__ import annotations

import contextlib
import logging
import math
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import checkpoints, distributed, formats, runs
from .config import Config, merge_for_resume
from .data import batches_per_epoch, epoch_batches, fingerprint, load_dataset
from .devices import autocast, resolve_device, resolve_precision, tune_for
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NoEvaluator,
    NoInception,
    OutputError,
    TrainingDiverged,
    TrainingInterrupted,
)
from .evaluation import inception_meter, quality_meter
from .files import describe
from .metrics import EVAL_SEED, InceptionFid, QualityMeter
from .reporting import Reporter, SilentReporter
from .sampling import draw, scoring_sample
from .state import TrainingState, new_state

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------- the GAN step
def train_step(
    state: TrainingState,
    real: torch.Tensor,
    latent_dim: int,
    precision: torch.dtype,
    loss: str = "ns",
    r1: float = 0.0,
    labels: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """One discriminator and one generator update, on logits: the non-saturating loss or the hinge loss,
    optionally with the R1 penalty (weight r1) on D's gradient at the real images. The statistics stay on the
    device (0-dim tensors): reading them every step would make a GPU wait for the host. loss_d is the adversarial
    loss alone, comparable between steps with and without the penalty.

    A conditional model gets the real batch's labels (None otherwise); the fakes are drawn for the same labels, so
    G is asked for the classes in the proportions of the data. noise: G's input, fresh from the RNG by default."""
    generator, discriminator = state.parallel or (state.generator, state.discriminator)
    z = torch.randn(real.shape[0], latent_dim, device=real.device) if noise is None else noise

    # (1) Update D: tell real from fake. Real and fake go through D separately so that BatchNorm never
    # mixes their statistics.
    real.requires_grad_(r1 > 0)
    with autocast(real.device, precision):
        fake = generator(z, labels)
        logits_real = discriminator(real, labels).float()
        logits_fake = discriminator(fake.detach(), labels).float()
    loss_d = discriminator_loss(logits_real, logits_fake, loss)
    penalty = r1 / 2 * r1_penalty(logits_real, real) if r1 else 0.0
    state.optimizer_d.zero_grad(set_to_none=True)
    (loss_d + penalty).backward()
    state.optimizer_d.step()

    # (2) Update G: make D call its images real. D's weights are frozen: only the gradient w.r.t. its input is needed.
    # The plain D (not its DDP wrapper, which would wait for weight gradients to average): it is not updated here.
    discriminator = state.discriminator
    discriminator.requires_grad_(False)
    with autocast(real.device, precision):
        logits_fake_for_g = discriminator(fake, labels).float()
    loss_g = generator_loss(logits_fake_for_g, loss)
    state.optimizer_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.optimizer_g.step()
    discriminator.requires_grad_(True)

    if state.ema is not None:
        state.ema.update_parameters(state.generator)
    return {
        "loss_d": loss_d.detach(),
        "loss_g": loss_g.detach(),
        "d_real": torch.sigmoid(logits_real.detach()).mean(),  # D(x)
        "d_fake": torch.sigmoid(logits_fake.detach()).mean(),  # D(G(z)) before D's update
    }


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "hinge":
        return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    # non-saturating: maximise log D(x) + log(1 - D(G(z)))
    return F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real)) + (
        F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    )


def r1_penalty(logits_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """|grad_x D(x)|^2 at the real images, averaged over the batch; differentiable, so D can learn to keep it small."""
    (gradient,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
    return gradient.pow(2).flatten(1).sum(1).mean()


def r1_weight(config: Config, step: int) -> float:
    """Lazy regularisation (StyleGAN2): the penalty on one step in r1_every, weighted r1_every times as much, costs
    a fraction of its price for the same effect on average."""
    return config.r1 * config.r1_every if config.r1 and step % config.r1_every == 0 else 0.0


def generator_loss(logits_fake: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "hinge":
        return -logits_fake.mean()
    return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))  # maximise log D(G(z))


def set_learning_rates(state: TrainingState, config: Config, total_steps: int) -> None:
    """--lr-schedule linear: both rates fall linearly from their start to 0 at the end of the run, which is its
    last step or, with --time-budget, the end of the budget if that comes first."""
    progress = 0.0
    if config.lr_schedule == "linear":
        progress = state.step / total_steps
        if config.time_budget:
            progress = max(progress, state.elapsed / (config.time_budget * 60))
    for optimizer, lr in ((state.optimizer_g, config.lr), (state.optimizer_d, config.lr_discriminator)):
        for group in optimizer.param_groups:
            group["lr"] = lr * max(0.0, 1.0 - progress)


# ----------------------------------------------------------------------------------- the loop
def train(config: Config, reporter_factory: Callable[..., Reporter] = Reporter) -> Path:
    """Train a new run; returns its folder."""
    device = distributed.start(resolve_device(config.device))
    run_dir = Path(config.run_dir or distributed.broadcast(str(runs.new_run_dir())))  # one name for every rank
    if distributed.is_main():  # rank 0 makes the folder: the others could find it already made
        runs.check_run_dir(run_dir, resuming=False)
    config = Config.from_dict({**config.to_dict(), "data_dir": absolute(config.data_dir)})  # advice from anywhere
    data = training_data(config)
    config = Config.from_dict({**config.to_dict(), "run_dir": str(run_dir), "num_classes": count_classes(config, data)})
    return fit(config, new_state(config, device), device, data, reporter_factory, resuming=False)


def resume(
    run_dir: str | Path,
    overrides: dict[str, Any],
    reporter_factory: Callable[..., Reporter] = Reporter,
) -> Path:
    """Continue a run from its newest valid checkpoint, with the explicitly given flags applied."""
    run_dir = Path(run_dir)
    runs.check_run_dir(run_dir, resuming=True)
    if "data_dir" in overrides:
        overrides = {**overrides, "data_dir": absolute(overrides["data_dir"])}
    path, config, state, device = restore_newest(run_dir, overrides)
    log.info(f"resuming {path} at epoch {state.epoch}, batch {state.batches_done} (step {state.step})")
    warn_of_another_world_size(state)
    # other data is refused as soon as it is read, before it is cached anywhere
    data = training_data(config, check=lambda images, labels: check_same_data(state, fingerprint(images, labels)))
    return fit(config, state, device, data, reporter_factory, resuming=True)


def absolute(data_dir: str) -> str:
    return str(Path(data_dir).absolute())


def warn_of_another_world_size(state: TrainingState) -> None:
    """--batch-size is per process: a run resumed with another number of processes goes on with another global
    batch (and another position in the epoch's order)."""
    world = distributed.world_size()
    if state.world_size and state.world_size != world:
        log.warning(
            f"this run was trained by {state.world_size} process(es) and goes on with {world}: each step now takes "
            f"{world}/{state.world_size} times the images it took (--batch-size is per process)"
        )


def training_data(config: Config, check: Callable[..., None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of the training split, as the config asks for them; check may refuse them (see load_dataset)."""
    return load_dataset(
        config.dataset, config.data_dir, img_size=config.img_size, download=config.download, check=check
    )


def count_classes(config: Config, data: tuple[torch.Tensor, torch.Tensor]) -> int:
    """A conditional model's class count, from the labels; an unconditional one needs none."""
    if not config.conditional:
        return 0
    classes = int(data[1].max()) + 1
    if classes < 2:
        raise ConfigError(
            f"--conditional needs labelled data, and {config.dataset} in {config.data_dir} has one class"
            + (" (a folder's classes are its sub-folders)" if config.dataset == "folder" else ""),
            "conditional",
        )
    return classes


def restore_newest(run_dir: Path, overrides: dict[str, Any]) -> tuple[Path, Config, TrainingState, torch.device]:
    """The newest checkpoint that loads and fits its model; newer broken ones are skipped with a warning."""
    candidates = checkpoints.list_checkpoints(run_dir)
    if not candidates:
        raise CheckpointError(f"no checkpoint in {run_dir / runs.CHECKPOINT_DIR} to resume from")
    for path in reversed(candidates):
        try:
            payload = formats.load(path, (formats.CHECKPOINT,))
        except CheckpointError as error:
            log.warning(f"skipping broken checkpoint: {error}")
            continue
        config, changes = merge_for_resume(Config.from_dict(payload["config"]), {**overrides, "run_dir": str(run_dir)})
        device = distributed.start(resolve_device(config.device))
        try:
            state = formats.restore_checkpoint(payload, config, device)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:  # loads, but does not fit the model
            reason = " ".join(str(error).split())[:300]
            log.warning(f"skipping broken checkpoint: {path} does not fit its model: {type(error).__name__}: {reason}")
            continue
        for name, (old, new) in changes.items():
            if name != "run_dir":
                log.warning(f"resuming with {name} changed from {old!r} to {new!r}")
        return path, config, state, device
    raise CheckpointError(f"no valid checkpoint in {run_dir / runs.CHECKPOINT_DIR}")


def fit(
    config: Config,
    state: TrainingState,
    device: torch.device,
    data: tuple[torch.Tensor, torch.Tensor],
    reporter_factory: Callable[..., Reporter],
    resuming: bool,
) -> Path:
    """The epoch loop on the training data (images, labels). Everything that can fail for the user's reasons
    (data, precision, batch size) is checked before the run folder is made or touched."""
    run_dir = Path(config.run_dir)
    precision = resolve_precision(config.precision, device)
    images, labels = data
    steps_per_epoch = batches_per_epoch(len(images), config.batch_size * distributed.world_size(), config.max_batches)
    check_same_data(state, fingerprint(images, labels))
    main = distributed.is_main()  # rank 0 writes everything; under torchrun the others only train
    state.world_size = distributed.world_size()
    meters = quality_meters(config, device) if main else []
    prepare_models(state, config, device)
    if main:
        runs.prepare_run_dir(run_dir, resuming)
    with runs.RunLock(run_dir) if main else contextlib.nullcontext():
        if resuming and main:  # what a killed process left: temporaries, and metrics its checkpoint does not have
            runs.remove_temporaries(run_dir)
            runs.truncate_metrics(run_dir, state.epoch)
        reporter = (reporter_factory if main else SilentReporter)(
            run_dir, config, steps_per_epoch, precision, purge_step=state.step if resuming else None
        )
        try:
            loop(config, state, (images.to(device), labels.to(device)), precision, reporter, meters)
        except torch.cuda.OutOfMemoryError:
            raise ConfigError(
                f"out of memory on {device} at --batch-size {config.batch_size}: pass a smaller one (with --resume "
                f"the run goes on from its newest checkpoint)",
                "batch_size",
            ) from None
        except OSError as error:  # TensorBoard's writer reports a full disk late, from its own thread
            raise OutputError(
                f"could not write to {run_dir}: {describe(error)}; the checkpoints saved so far are intact"
            ) from None
        finally:
            reporter.close()
    return run_dir


def prepare_models(state: TrainingState, config: Config, device: torch.device) -> None:
    """Device tuning, --compile and, under torchrun, the DDP wrappers and each rank's own noise."""
    tune_for(device)
    if device.type == "cuda" and config.arch == "dcgan":  # convolutions run fastest on NHWC on GPUs
        for model in (state.generator, state.discriminator):
            model.to(memory_format=torch.channels_last)
    if config.compile:  # in place: the checkpoints keep their keys
        state.generator.compile()
        if not config.r1:  # torch.compile cannot differentiate twice, as R1's gradient penalty does through D
            state.discriminator.compile()
    if distributed.world_size() == 1:
        return
    if config.sync_batchnorm:
        distributed.sync_batchnorm(state.generator, device)
        distributed.sync_batchnorm(state.discriminator, device)
    state.parallel = (  # D's running statistics stay each rank's own; G's come from rank 0 for the samples
        distributed.wrap(state.generator, device, sync_buffers=True),
        distributed.wrap(state.discriminator, device, sync_buffers=False),
    )
    torch.manual_seed(config.seed + 1_000_003 * (distributed.rank() + 1) + state.step)


def quality_meters(config: Config, device: torch.device) -> list[QualityMeter | InceptionFid]:
    """The meters of the per-epoch metrics: the evaluator's, and with --inception-fid the standard FID. Whichever
    cannot be had (no evaluator for the dataset; no Inception weights offline) is left out with one warning;
    none at all (or --eval-every 0) turns the metrics off."""
    if not config.eval_every:
        return []
    meters: list[QualityMeter | InceptionFid] = []
    try:
        meters.append(quality_meter(config.dataset, config.data_dir, device, download=config.download))
    except NoEvaluator as error:
        log.warning(f"quality metrics are off: {error}")
    if config.inception_fid:
        try:
            meters.append(inception_meter(config.dataset, config.data_dir, config.inception_weights, device,
                                          download=config.download))  # fmt: skip
        except NoInception as error:
            log.warning(f"Inception FID is off: {error}")
    return meters


def loop(
    config: Config,
    state: TrainingState,
    data: tuple[torch.Tensor, torch.Tensor],
    precision: torch.dtype,
    reporter: Reporter,
    meters: list[QualityMeter | InceptionFid],
) -> None:
    if budget_spent(config, state):
        log.warning(f"the time budget of {config.time_budget:g} min is already spent; pass a larger --time-budget or 0")
    # A dead peer's error is made while a signal only sets a flag: torchrun's SIGTERM follows it closely.
    with StopSignals() as stop, distributed.peer_errors():
        while state.epoch < config.epochs and not budget_spent(config, state):
            complete = train_epoch(config, state, data, precision, reporter, stop)
            saved = finish_epoch(config, state, reporter, meters, stop, complete)
            # every rank leaves with the same clock, for the same reason (a no-op in one process)
            state.elapsed, stop.signal_number = distributed.agree(state.elapsed, stop.signal_number, data[0].device)
            if stop.signal_number:  # arrived during the samples, the evaluation or the checkpoint
                raise interrupted(config, state, stop.signal_number, saved)
    if distributed.is_main():
        export_generator(config, state, Path(config.run_dir))
    distributed.barrier()
    reporter.finish(state)


def budget_spent(config: Config, state: TrainingState) -> bool:
    """--time-budget counts the run's training time, summed over resumes (state.elapsed)."""
    return bool(config.time_budget) and state.elapsed >= config.time_budget * 60


def check_same_data(state: TrainingState, found: str) -> None:
    """A resumed run must train on the data it started with (a changed set would silently skip batches)."""
    if state.data and state.data != found:
        raise DataError(
            f"the training data changed since this run started: its checkpoint was trained on "
            f"{state.data}, --data-dir now holds {found}; resume with the same data or start a new run"
        )
    state.data = found


def train_epoch(
    config: Config,
    state: TrainingState,
    data: tuple[torch.Tensor, torch.Tensor],
    precision: torch.dtype,
    reporter: Reporter,
    stop: StopSignals,
) -> bool:
    """Train the rest of state.epoch; True if it ended, False if the time budget ran out first.
    On SIGINT/SIGTERM save a mid-epoch checkpoint and raise.

    Under torchrun the ranks agree every --log-every steps on the clock and on any stop signal, so all of them
    stop at the same step; in one process that happens every step."""
    reporter.start_epoch(state.epoch, state.batches_done)
    world, main = distributed.world_size(), distributed.is_main()
    total_steps = config.epochs * batches_per_epoch(len(data[0]), config.batch_size * world, config.max_batches)
    batches = epoch_batches(
        *data,
        batch_size=config.batch_size,
        seed=config.seed,
        epoch=state.epoch,
        start=state.batches_done,
        max_batches=config.max_batches,
        rank=distributed.rank(),
        world_size=world,
    )
    channels_last = data[0].device.type == "cuda" and config.arch == "dcgan"
    clock = time.perf_counter()
    unsynced = 0.0  # wall seconds (logging and samples included) not yet added to state.elapsed
    totals: dict[str, torch.Tensor] = {}  # the step statistics since the last read, summed on the device
    summed = 0
    for real, labels in batches:
        if channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        set_learning_rates(state, config, total_steps)
        r1 = r1_weight(config, state.step)
        stats = train_step(
            state, real, config.latent_dim, precision, config.loss, r1, labels if config.conditional else None
        )
        unsynced += time.perf_counter() - clock
        clock = time.perf_counter()
        state.step += 1
        state.batches_done += 1
        totals = {name: value + totals.get(name, 0) for name, value in stats.items()}
        summed += 1
        reporter.advance(len(real) * world)
        if state.step % config.log_every == 0:
            reporter.log_step(state.step, read_stats(config, state, totals, summed), state.elapsed + unsynced)
            totals, summed = {}, 0
        if main and config.sample_interval and state.step % config.sample_interval == 0:
            reporter.log_samples(f"step_{state.step:07d}", sample_grid(state), state.step)
        if world > 1 and state.step % config.log_every:
            continue
        state.elapsed, stop.signal_number = distributed.agree(state.elapsed + unsynced, stop.signal_number, real.device)
        unsynced = 0.0
        out_of_time = budget_spent(config, state)
        if out_of_time or stop.signal_number:  # about to save: never a diverged state
            read_stats(config, state, totals, summed)
        if out_of_time:
            return False  # finish_epoch evaluates and saves this position; loop() then ends the run
        if stop.signal_number:
            path = checkpoints.checkpoint_path(Path(config.run_dir), state.epoch, state.batches_done)
            if main:
                formats.save(formats.CHECKPOINT, formats.checkpoint_fields(state, config), path)
            distributed.barrier()  # no rank exits (and makes torchrun stop the rest) before the checkpoint is whole
            raise interrupted(config, state, stop.signal_number, path)
    state.elapsed += unsynced
    read_stats(config, state, totals, summed)
    return True


def read_stats(config: Config, state: TrainingState, totals: dict[str, torch.Tensor], summed: int) -> dict[str, float]:
    """The mean statistics of the last `summed` steps: one host sync per read. Non-finite ones end the run
    before anything is saved from it."""
    if not totals:
        return {}
    means = dict(zip(totals, (torch.stack(list(totals.values())) / summed).tolist(), strict=True))
    if not all(math.isfinite(value) for value in means.values()):
        steps = (
            f"at step {state.step}" if summed == 1 else f"between step {state.step - summed + 1} and step {state.step}"
        )
        raise TrainingDiverged(
            f"training diverged {steps} (epoch {state.epoch}): {means}; "
            f"the last good checkpoint is kept in {Path(config.run_dir) / runs.CHECKPOINT_DIR}"
        )
    return means


def finish_epoch(
    config: Config,
    state: TrainingState,
    reporter: Reporter,
    meters: list[QualityMeter | InceptionFid],
    stop: StopSignals,
    complete: bool,
) -> Path:
    """Samples from the fixed noise, the quality metrics when due, then the epoch's checkpoint (and best.pt).

    When the time budget ran out inside the epoch, the same happens at that position (a mid-epoch checkpoint that
    --resume continues), with the final evaluation. A signal during the evaluation abandons it: the checkpoint is
    what must be saved before a supervisor's grace period ends. Returns the checkpoint's path.
    """
    clock = time.perf_counter()
    epoch = state.epoch
    last = budget_spent(config, state) or (complete and epoch + 1 == config.epochs)
    main = distributed.is_main()
    if main:
        reporter.log_samples(f"epoch_{epoch}" if complete else f"step_{state.step:07d}", sample_grid(state),
                             state.step, epoch_grid=complete)  # fmt: skip
    metrics, eval_seconds = None, 0.0
    if meters and (last or (complete and (epoch + 1) % config.eval_every == 0)):
        eval_started = time.perf_counter()
        try:
            with stop.evaluation():
                images, labels = scoring_sample(state.sampler, config.eval_samples, config.latent_dim, EVAL_SEED)
                metrics = {}
                for meter in meters:  # one sample for every meter
                    metrics |= meter.score(images, labels)
        except EvaluationStopped:
            metrics = None
        eval_seconds = time.perf_counter() - eval_started
    state.elapsed += time.perf_counter() - clock
    if complete:
        state.epoch, state.batches_done = epoch + 1, 0
    if metrics is not None:
        record = {
            "epoch": epoch,
            "step": state.step,
            "elapsed": round(state.elapsed, 2),
            "eval_seconds": round(eval_seconds, 2),
            **metrics,
        }
        reporter.log_metrics(record)
    fields = formats.checkpoint_fields(state, config)
    fid = None if metrics is None else metrics.get("fid", metrics.get("inception_fid"))  # best.pt: the lowest
    improved = fid is not None and fid < state.best_fid
    if improved:
        state.best_fid = fields["best_fid"] = fid
    path = checkpoints.checkpoint_path(Path(config.run_dir), epoch, None if complete else state.batches_done)
    if main:
        formats.save(formats.CHECKPOINT, fields, path)  # first: the resumable checkpoint matters most on a full disk
        if improved:
            formats.save(formats.CHECKPOINT, fields, Path(config.run_dir) / runs.BEST_FILE)
        checkpoints.prune_checkpoints(config.run_dir, config.keep_last)
    reporter.end_epoch(epoch, state, metrics)
    return path


def interrupted(config: Config, state: TrainingState, signal_number: int, saved: Path) -> TrainingInterrupted:
    name = signal.Signals(signal_number).name
    world = distributed.world_size()
    launcher = f"torchrun --nproc-per-node {world}" if world > 1 else "python"  # one rank's share of a batch stays
    return TrainingInterrupted(
        f"{name}: stopped at epoch {state.epoch}, batch {state.batches_done} (step {state.step}); saved {saved}.\n"
        f"Resume with: {launcher} -m mnist_gan main --resume --run-dir {shlex.quote(config.run_dir)}",
        signal_number,
    )


def sample_grid(state: TrainingState) -> torch.Tensor:
    """Images from the fixed noise, in [-1, 1], on the CPU; a conditional generator draws its classes in turn."""
    return draw(state.sampler, state.fixed_noise)


def export_generator(config: Config, state: TrainingState, run_dir: Path) -> None:
    fields = formats.generator_fields(config, state.sampler, state.epoch)
    formats.save(formats.GENERATOR, fields, run_dir / runs.GENERATOR_FILE)


class EvaluationStopped(BaseException):
    """Raised inside an evaluation by a stop signal (a BaseException, so no library code swallows it)."""


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag checked after each step; a second one stops at once.

    During an evaluation the first signal abandons it at once (the epoch's checkpoint is saved next, and
    further signals wait for that save).
    """

    def __init__(self) -> None:
        self.signal_number = 0
        self.evaluating = self.saving_after_evaluation = False
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
            if self.saving_after_evaluation:
                return
            raise KeyboardInterrupt
        self.signal_number = number
        if self.evaluating:
            self.evaluating, self.saving_after_evaluation = False, True
            raise EvaluationStopped

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        if self.signal_number:
            raise EvaluationStopped
        self.evaluating = True
        try:
            yield
        finally:
            self.evaluating = False

    def __exit__(self, *exc_info: Any) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
