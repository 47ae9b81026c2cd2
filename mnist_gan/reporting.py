"""What a run shows: TensorBoard scalars, sample grids and hparams, PNGs on disk, and console progress."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from .config import Config
from .files import append_line, describe
from .metrics import CONDITIONAL_METRICS, EXTRA_METRICS, METRICS
from .plots import save_grid
from .runs import GENERATOR_FILE, IMAGES_DIR, METRICS_FILE

if TYPE_CHECKING:
    from .state import TrainingState

log = logging.getLogger(__name__)
SCALAR_TAGS = {"loss_d": "loss/discriminator", "loss_g": "loss/generator", "d_real": "D(x)", "d_fake": "D(G(z))"}
HPARAM_METRICS = ("metrics/fid", "metrics/inception_score", "loss/generator", "loss/discriminator")


def quiet_event_writer_errors(args: threading.ExceptHookArgs, default: Any = threading.excepthook) -> None:
    """TensorBoard's writer thread keeps a write error (a full disk) and raises it again in the next flush, which
    ends in one clear message; the thread's own traceback would only repeat it."""
    if not (isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith("tensorboard.")):
        default(args)


threading.excepthook = quiet_event_writer_errors


class Reporter:
    """Writes everything a person watches: TensorBoard events, sample PNGs, a progress bar or log lines."""

    def __init__(
        self,
        run_dir: Path,
        config: Config,
        steps_per_epoch: int,
        precision: torch.dtype,
        console: Console | None = None,
        purge_step: int | None = None,
    ) -> None:
        self.run_dir, self.config, self.steps_per_epoch = run_dir, config, steps_per_epoch
        self.console = console or Console(stderr=True)
        # purge_step: a resumed run hides the events a killed process logged after its checkpoint
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self.write_hparams()
        self.window_images, self.window_start = 0, time.perf_counter()
        self.progress: Progress | None = None
        log.info(
            f"run {run_dir}: {config.arch} on {config.dataset}, {config.epochs} epochs of "
            f"{steps_per_epoch} batches, {str(precision).removeprefix('torch.')}"
        )

    def write_hparams(self) -> None:
        """hparams in this run's own event file (SummaryWriter.add_hparams would make a sub-run)."""
        values = {key: value for key, value in self.config.to_dict().items() if key not in ("run_dir", "data_dir")}
        experiment, start, end = hparams(values, {tag: float("nan") for tag in HPARAM_METRICS})
        for summary in (experiment, start, end):
            self.writer.file_writer.add_summary(summary)

    def start_epoch(self, epoch: int, batches_done: int) -> None:
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "train",
                total=self.steps_per_epoch,
                completed=batches_done,
                epoch=f"{epoch + 1}/{self.config.epochs}",
                status="",
            )
        self.window_images, self.window_start = 0, time.perf_counter()

    def advance(self, batch_size: int) -> None:
        """One step done: the progress bar and the speed window."""
        self.window_images += batch_size
        if self.progress is not None:
            self.progress.advance(self.task)

    def log_step(self, step: int, stats: dict[str, float], elapsed: float) -> None:
        """The training scalars, averaged over the steps since the last call (every --log-every steps)."""
        images_per_second = self.window_images / max(time.perf_counter() - self.window_start, 1e-9)
        self.window_images, self.window_start = 0, time.perf_counter()
        remaining = self.run_seconds_left(step, images_per_second / self.config.batch_size, elapsed)
        for key, tag in SCALAR_TAGS.items():
            self.writer.add_scalar(tag, stats[key], step)
        self.writer.add_scalar("speed/images_per_second", images_per_second, step)
        status = (
            f"D {stats['loss_d']:.3f}  G {stats['loss_g']:.3f}  D(x) {stats['d_real']:.2f}  "
            f"D(G(z)) {stats['d_fake']:.2f}  {images_per_second:,.0f} img/s  run ETA {remaining // 60:.0f}:{remaining % 60:02.0f}"
        )
        if self.progress is not None:
            self.progress.update(self.task, status=status)
        elif step % (self.config.log_every * 20) == 0:
            log.info(f"step {step}: {status}")

    def run_seconds_left(self, step: int, steps_per_second: float, elapsed: float) -> float:
        """Seconds until the run ends: its remaining steps at the current speed, or the time budget if sooner
        (evaluations and checkpoints are not counted)."""
        left = (self.config.epochs * self.steps_per_epoch - step) / max(steps_per_second, 1e-9)
        if self.config.time_budget:
            left = min(left, self.config.time_budget * 60 - elapsed)
        return max(left, 0.0)

    def log_samples(self, name: str, images: torch.Tensor, step: int, epoch_grid: bool = False) -> None:
        """A PNG in the run's images/ folder; epoch grids also go to TensorBoard under samples/."""
        columns = self.grid_columns()
        if columns:  # whole rows, one column per class: 63 of the 64 for 9 classes
            images = images[: len(images) // columns * columns]
        save_grid(images, self.run_dir / IMAGES_DIR / f"{name}.png", nrow=columns)
        if epoch_grid:
            grid = (images[:64].add(1).div(2)).clamp(0, 1)
            self.writer.add_images("samples/fixed_noise", grid, step)

    def grid_columns(self) -> int | None:
        """A conditional run draws the fixed noise for classes 0, 1, 2, ... in turn: one column per class."""
        classes = self.config.num_classes if self.config.conditional else 0
        return classes if 2 <= classes <= 16 else None

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Quality metrics to TensorBoard under metrics/ and as one JSON line in metrics.jsonl."""
        for name in (*METRICS, *CONDITIONAL_METRICS, *EXTRA_METRICS):
            if name in record:
                self.writer.add_scalar(f"metrics/{name}", record[name], record["step"])
        append_line(self.run_dir / METRICS_FILE, json.dumps(record))

    def end_epoch(self, epoch: int, state: TrainingState, metrics: dict[str, Any] | None) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.writer.flush()
        quality = ""
        if metrics:
            shown = {"fid": "FID {:.2f}", "inception_score": "IS {:.2f}", "classes_covered": "{} classes covered",
                     "label_accuracy": "label accuracy {:.1%}", "inception_fid": "Inception FID {:.2f}"}  # fmt: skip
            quality = "; " + ", ".join(text.format(metrics[name]) for name, text in shown.items() if name in metrics)
        if state.epoch > epoch:
            log.info(f"epoch {epoch + 1}/{self.config.epochs} done: step {state.step}, {state.elapsed:.0f} s{quality}")
        else:  # the time budget ended the run inside the epoch
            log.info(
                f"time budget of {self.config.time_budget:g} min spent at step {state.step} "
                f"(epoch {epoch + 1}/{self.config.epochs}, batch {state.batches_done}), {state.elapsed:.0f} s{quality}"
            )

    def finish(self, state: TrainingState) -> None:
        log.info(
            f"finished in {state.elapsed:.0f} s; generator saved to "
            f"{self.run_dir / GENERATOR_FILE}; samples in {self.run_dir / IMAGES_DIR}"
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        try:
            self.writer.close()
        except OSError as error:  # a full disk: the checkpoints matter, a lost event tail does not
            log.warning(f"TensorBoard events in {self.run_dir} are incomplete: {describe(error)}")


class SilentReporter(Reporter):
    """What the ranks other than 0 report under torchrun: nothing (rank 0 writes events, grids and the log)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def start_epoch(self, epoch: int, batches_done: int) -> None:
        pass

    def advance(self, batch_size: int) -> None:
        pass

    def log_step(self, step: int, stats: dict[str, float], elapsed: float) -> None:
        pass

    def log_samples(self, name: str, images: torch.Tensor, step: int, epoch_grid: bool = False) -> None:
        pass

    def log_metrics(self, record: dict[str, Any]) -> None:
        pass

    def end_epoch(self, epoch: int, state: TrainingState, metrics: dict[str, Any] | None) -> None:
        pass

    def finish(self, state: TrainingState) -> None:
        pass

    def close(self) -> None:
        pass
