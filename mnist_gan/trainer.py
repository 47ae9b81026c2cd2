"""Setting a run up: a new run or a resumed one, its data, device, models, folder and meters; epochs.py trains it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import checkpoints, distributed, formats, runs
from .clusters import cluster_labels, cluster_shares
from .config import Config, merge_for_resume
from .data import batches_per_epoch, fingerprint, load_dataset
from .datasets import DATASETS
from .devices import resolve_device, resolve_precision, tune_for
from .epochs import Session, loop
from .errors import CheckpointError, ConfigError, DataError, MnistGanError, OutputError, TrainingFailed
from .files import describe
from .metrics import quality_meters
from .reporting import Reporter, SilentReporter
from .state import TrainingState, new_state

log = logging.getLogger(__name__)
Data = tuple[torch.Tensor, torch.Tensor]  # (images, labels) of the training split


def train(config: Config, reporter_factory: Callable[..., Reporter] = Reporter) -> Path:
    """Train a new run; returns its folder."""
    device = distributed.start(resolve_device(config.device))
    run_dir = Path(config.run_dir or distributed.broadcast(str(runs.new_run_dir())))  # one name for every rank
    if distributed.is_main():  # rank 0 makes the folder: the others could find it already made
        runs.check_run_dir(run_dir, resuming=False)
    config = Config.from_dict({**config.to_dict(), "data_dir": absolute(config.data_dir)})  # advice from anywhere
    data = training_data(config)
    config = Config.from_dict({**config.to_dict(), "run_dir": str(run_dir), "num_classes": count_classes(config, data)})
    return launch(config, new_state(config, device), device, data, reporter_factory, resuming=False)


def resume(
    run_dir: str | Path, overrides: dict[str, Any], reporter_factory: Callable[..., Reporter] = Reporter
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
    return launch(config, state, device, data, reporter_factory, resuming=True)


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


def training_data(config: Config, check: Callable[..., None] | None = None) -> Data:
    """The training split, as the config asks for it; check may refuse it (see load_dataset)."""
    return load_dataset(config.dataset, config.data_dir, img_size=config.img_size, download=config.download,
                        check=check, background=config.background)  # fmt: skip


def count_classes(config: Config, data: Data) -> int:
    """A conditional model's class count, from the labels; an unconditional one needs none."""
    if not config.conditional:
        return 0
    classes = int(data[1].max()) + 1
    if classes < 2:
        where = DATASETS[config.dataset].classes
        raise ConfigError(
            f"--conditional needs labelled data, and {config.dataset} in {config.data_dir} has one class"
            + (f" ({where})" if where else ""),
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
        config, changes = merge_for_resume(formats.saved_config(payload), {**overrides, "run_dir": str(run_dir)})
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


def launch(
    config: Config,
    state: TrainingState,
    device: torch.device,
    data: Data,
    reporter_factory: Callable[..., Reporter],
    resuming: bool,
) -> Path:
    """Check what can fail for the user's reasons (data, precision, batch size) before the run folder is made or
    touched, then hold the folder's lock and hand the run to the epoch loop."""
    run_dir, writes = Path(config.run_dir), distributed.is_main()  # under torchrun rank 0 alone writes
    precision = resolve_precision(config.precision, device)
    steps_per_epoch = batches_per_epoch(len(data[0]), config.batch_size * distributed.world_size(), config.max_batches)
    check_same_data(state, fingerprint(*data))
    labels = training_labels(config, state, data)
    state.world_size = distributed.world_size()
    meters = quality_meters(config, device) if writes else []
    prepare_models(state, config, device)
    if writes:
        runs.prepare_run_dir(run_dir, resuming)
    with runs.RunLock(run_dir) if writes else contextlib.nullcontext():
        if resuming and writes:  # what a killed process left: temporaries, and metrics its checkpoint does not have
            runs.remove_temporaries(run_dir)
            runs.truncate_metrics(run_dir, state.epoch)
        reporter = (reporter_factory if writes else SilentReporter)(
            run_dir, config, steps_per_epoch, precision, purge_step=state.step if resuming else None
        )
        try:
            loop(Session(config, state, (data[0].to(device), labels.to(device)), precision, reporter, meters))
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
        except Exception as error:
            failure = device_or_compiler_failure(error, config, run_dir)
            if failure is None:
                raise
            raise failure from None
        finally:
            reporter.close()
    return run_dir


def training_labels(config: Config, state: TrainingState, data: Data) -> torch.Tensor:
    """The labels training conditions on: the data's, or with --clusters (and no labels) the k-means clusters of
    the images, in whose shares the generator then draws them (a resumed run finds the same clusters again)."""
    if not config.cluster_count:
        return data[1]
    labels = cluster_labels(data[0], config.cluster_count, config.seed)
    shares = cluster_shares(labels, config.cluster_count)
    for generator in (state.generator, state.sample_generator):
        generator.clusters.shares.copy_(shares)
    log.info(f"{config.cluster_count} k-means clusters of the training images, each {shares.min():.1%} to "
             f"{shares.max():.1%} of them")  # fmt: skip
    return labels


def device_or_compiler_failure(error: Exception, config: Config, run_dir: Path) -> MnistGanError | None:
    """A GPU that failed or vanished mid-run, or --compile that cannot compile here, as one clear error (the
    checkpoints saved so far are whole); None for anything else."""
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    resume = f"the checkpoints in {run_dir} are intact: --resume goes on from the newest"
    if isinstance(error, torch.AcceleratorError) or "CUDA error" in first_line:
        return TrainingFailed(f"the GPU failed during training ({first_line}); {resume}")
    if config.compile and type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
        cause = getattr(error, "inner_exception", None) or error  # what the compiler backend raised
        first_line = f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]}"
        return ConfigError(f"--compile could not compile the models here ({first_line}); train without --compile "
                           f"({resume})", "compile")  # fmt: skip
    return None


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
    if config.sync_batchnorm:  # in one process too: the flag is checked, and torch's layer falls back to BatchNorm
        distributed.sync_batchnorm(state.generator, device)
        distributed.sync_batchnorm(state.discriminator, device)
    if distributed.world_size() == 1:
        return
    state.parallel = (  # D's running statistics stay each rank's own; G's come from rank 0 for the samples
        distributed.wrap(state.generator, device, sync_buffers=True),
        distributed.wrap(state.discriminator, device, sync_buffers=False),
    )
    torch.manual_seed(config.seed + 1_000_003 * (distributed.rank() + 1) + state.step)


def check_same_data(state: TrainingState, found: str) -> None:
    """A resumed run must train on the data it started with (a changed set would silently skip batches)."""
    if state.data and state.data != found:
        raise DataError(
            f"the training data changed since this run started: its checkpoint was trained on "
            f"{state.data}, --data-dir now holds {found}; resume with the same data or start a new run"
        )
    state.data = found
