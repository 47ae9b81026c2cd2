"""The command line: parses flags, builds a Config and calls the library; errors become exit codes only here."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from . import checkpoints, sampling
from .config import ARCHITECTURES, DATASETS, DEVICES, LIMITS, RECIPES, Config
from .errors import ConfigError, MnistGanError, OutputError, TrainingInterrupted
from .files import check_output, write_text
from .plots import FIGURE_SUFFIXES
from .runs import newest_run

# The defaults --help shows: the default dataset's (MNIST's) recipe, before the dataset's sizes are filled in.
DEFAULTS = SimpleNamespace(
    **{**{field.name: field.default for field in dataclasses.fields(Config)}, **RECIPES["mnist"]}
)
app = typer.Typer(
    help="Train GANs on MNIST and other image sets, watch them in TensorBoard, render and measure their samples.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)  # progress, logs and errors; results go to stdout


@app.callback()
def setup_logging(ctx: typer.Context) -> None:
    """The library logs through `logging` (module loggers under mnist_gan); for each command the CLI shows them
    with one handler: rich on a terminal, plain whole lines otherwise (a log file or CI keeps lines unwrapped)."""
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("mnist_gan")
    logger.setLevel(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)  # torchrun: rank 0 tells
    logger.addHandler(handler)
    ctx.call_on_close(lambda: logger.removeHandler(handler))


def choice(options: tuple[str, ...]):
    def check(value: str) -> str:
        if value not in options:
            raise typer.BadParameter(f"{value!r} is not one of: {', '.join(options)}")
        return value

    return check


def output_file(*suffixes: str):
    """A callback that checks an output path before any work starts (see files.check_output)."""

    def check(value: Optional[Path]) -> Optional[Path]:
        if value is not None:
            try:
                check_output(value, suffixes)
            except OutputError as error:
                raise typer.BadParameter(str(error)) from None
        return value

    return check


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """One clear line and a non-zero exit for every error the user can cause; never a traceback.

    SIGTERM outside training's own handling (while loading, say) exits with 143, as Ctrl-C does with 130.
    Once stopped by a signal, repeats are ignored: the process is exiting with its checkpoint saved, and
    Python's shutdown would otherwise restore the default action and die of the repeat.
    """
    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        previous = None
    stopping = False
    try:
        yield
    except MnistGanError as error:
        stopping = isinstance(error, TrainingInterrupted)
        show_error(error)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None
    except SystemExit as signalled:  # from terminate()
        stopping = True
        if error := error_in_flight(signalled):  # under torchrun: a dead peer's error, then torchrun's SIGTERM
            show_error(error)
        raise
    finally:
        if stopping:
            ignore_stop_signals()
        elif previous is not None:
            signal.signal(signal.SIGTERM, previous)


def show_error(error: MnistGanError) -> None:
    """The process's last words, which no signal may cut short: under torchrun the SIGTERM that follows a dead
    peer lands while the survivor is saying why it stops (rich's first print can take milliseconds)."""
    label = "stopped" if isinstance(error, TrainingInterrupted) else "error"
    if getattr(error, "field", None):
        label += f": --{error.field.replace('_', '-')}"
    with stop_signals_ignored():  # the process is leaving anyway, with this error's exit code
        console.print(
            f"[bold red]{label}:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )  # unwrapped: commands in it can be pasted; escaped: a path or a library's message may hold [brackets]


def error_in_flight(signalled: SystemExit) -> MnistGanError | None:
    """The error that was on its way out when a signal's SystemExit replaced it (Python keeps it as the context)."""
    error = signalled.__context__
    while error is not None and not isinstance(error, MnistGanError):
        error = error.__context__
    return error


def ignore_stop_signals() -> dict[int, Any]:
    """Ignore SIGINT and SIGTERM from now on; returns the handlers they had (none outside the main thread)."""
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            previous[number] = signal.signal(number, signal.SIG_IGN)
    return previous


@contextlib.contextmanager
def stop_signals_ignored() -> Iterator[None]:
    previous = ignore_stop_signals()
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(number, handler)


def terminate(number: int, frame: object) -> None:
    raise SystemExit(128 + number)


def was_given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed an option. A machine-wide MNIST_GAN_DATA_DIR is a default: a resumed run keeps its
    own data folder unless --data-dir is given."""
    return ctx.get_parameter_source(name).name == "COMMANDLINE"


InceptionFidOption = Annotated[
    bool,
    typer.Option(
        "--inception-fid", help="Also the standard FID on Inception-v3 features (needs torch-fidelity; slow on a CPU)."
    ),
]
InceptionWeightsOption = Annotated[
    str,
    typer.Option(envvar="MNIST_GAN_INCEPTION_WEIGHTS", help="Weights file for --inception-fid; default: downloaded."),
]


@app.command("main")
def main(
    ctx: typer.Context,
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = DEFAULTS.epochs,
    batch_size: Annotated[
        int,
        typer.Option(
            help="Images per batch (64 for the colour datasets); per process under torchrun, where --lr is not scaled for you."
        ),
    ] = DEFAULTS.batch_size,
    lr: Annotated[float, typer.Option(help="Adam learning rate, for G and D.")] = DEFAULTS.lr,
    b1: Annotated[float, typer.Option(help="Adam beta1 (0.5 for the colour datasets).")] = DEFAULTS.b1,
    b2: Annotated[float, typer.Option(help="Adam beta2 (0.999 for the colour datasets).")] = DEFAULTS.b2,
    latent_dim: Annotated[int, typer.Option(help="Size of the noise vector z.")] = DEFAULTS.latent_dim,
    img_size: Annotated[int, typer.Option(help="Image side in pixels; 0: the dataset's (28).")] = DEFAULTS.img_size,
    channels: Annotated[int, typer.Option(help="Image channels; 0: the dataset's (1).")] = DEFAULTS.channels,
    arch: Annotated[
        str, typer.Option(help=f"Architecture: {', '.join(ARCHITECTURES)} (dcgan for the colour datasets).")
    ] = DEFAULTS.arch,
    width: Annotated[int, typer.Option(help="DCGAN base channel count (ignored by mlp).")] = DEFAULTS.width,
    lr_d: Annotated[float, typer.Option(help="Adam learning rate of D; 0: the same as --lr.")] = DEFAULTS.lr_d,
    lr_schedule: Annotated[
        str,
        typer.Option(
            help="constant, or linear: both learning rates fall to 0 at the end of the run (its epochs, or --time-budget if sooner)."
        ),
    ] = DEFAULTS.lr_schedule,
    loss: Annotated[str, typer.Option(help="ns (non-saturating) or hinge.")] = DEFAULTS.loss,
    r1: Annotated[
        float, typer.Option(help="Weight gamma of the R1 penalty on D's gradient at real images; 0: off.")
    ] = DEFAULTS.r1,
    r1_every: Annotated[
        int,
        typer.Option(
            help="Apply R1 on one step in this many, as many times as strong (lazy R1: the same effect, cheaper)."
        ),
    ] = DEFAULTS.r1_every,
    spectral_norm: Annotated[bool, typer.Option(help="Spectral normalisation of D's layers.")] = DEFAULTS.spectral_norm,
    minibatch_std: Annotated[
        bool, typer.Option(help="D also sees the spread of its features over groups of 4 images (more variety).")
    ] = DEFAULTS.minibatch_std,
    conditional: Annotated[
        bool,
        typer.Option(
            help="Class-conditional G and D (labelled data; on for MNIST and Fashion-MNIST): `generate --label 7` "
            "draws the class asked for."
        ),
    ] = DEFAULTS.conditional,
    ema_decay: Annotated[
        float,
        typer.Option(
            help="Decay of the generator's weight average used for samples and export, at most; 0: off. "
            "Fashion-MNIST: 0.9999."
        ),
    ] = DEFAULTS.ema_decay,
    ema_span: Annotated[
        float,
        typer.Option(
            help="How far back the weight average reaches, as a fraction of the steps so far (until --ema-decay "
            "caps it). Fashion-MNIST: 1/3.",
            show_default="1/9",
        ),
    ] = DEFAULTS.ema_span,
    precision: Annotated[str, typer.Option(help="auto (bf16 where fast), fp32 or bf16.")] = DEFAULTS.precision,
    compile: Annotated[
        bool,
        typer.Option(help="torch.compile G (and D when --r1 is 0): a slow start, then faster steps (GPUs, long runs)."),
    ] = DEFAULTS.compile,
    sync_batchnorm: Annotated[
        bool, typer.Option(help="Under torchrun on GPUs: BatchNorm statistics over every rank's batch.")
    ] = DEFAULTS.sync_batchnorm,
    dataset: Annotated[str, typer.Option(help=f"Dataset: {', '.join(DATASETS)}.")] = DEFAULTS.dataset,
    data_dir: Annotated[
        str,
        typer.Option(
            envvar="MNIST_GAN_DATA_DIR", help="Dataset root (torchvision layout); downloaded there if missing."
        ),
    ] = DEFAULTS.data_dir,
    download: Annotated[
        bool, typer.Option(help="Download the dataset into --data-dir when it is missing.")
    ] = DEFAULTS.download,
    run_dir: Annotated[
        str, typer.Option(help="Folder for events, checkpoints and images; default: runs/<date_time>.")
    ] = DEFAULTS.run_dir,
    max_batches: Annotated[
        int, typer.Option(help="Cap on batches per epoch, for quick runs; 0: no cap.")
    ] = DEFAULTS.max_batches,
    time_budget: Annotated[
        float,
        typer.Option(
            help="Minutes of training after which the run ends cleanly (final evaluation, checkpoint, generator.pth); resumable. 0: none."
        ),
    ] = DEFAULTS.time_budget,
    sample_interval: Annotated[
        int, typer.Option(help="Batches between saved sample grids; 0: only per epoch.")
    ] = DEFAULTS.sample_interval,
    log_every: Annotated[int, typer.Option(help="Steps between TensorBoard scalars.")] = DEFAULTS.log_every,
    eval_every: Annotated[
        int, typer.Option(help="Epochs between quality evaluations (and the last epoch); 0: off.")
    ] = DEFAULTS.eval_every,
    eval_samples: Annotated[
        int, typer.Option(help="Generated images per evaluation during training.")
    ] = DEFAULTS.eval_samples,
    inception_fid: InceptionFidOption = DEFAULTS.inception_fid,
    inception_weights: InceptionWeightsOption = DEFAULTS.inception_weights,
    keep_last: Annotated[
        int, typer.Option(help="Per-epoch checkpoints to keep; 0: all. best.pt and generator.pth always stay.")
    ] = DEFAULTS.keep_last,
    seed: Annotated[int, typer.Option(help="Random seed.")] = DEFAULTS.seed,
    device: Annotated[str, typer.Option(help=f"Device: {', '.join(DEVICES)}.")] = DEFAULTS.device,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue --run-dir (default: the most recently modified run under runs/) from its newest valid checkpoint.",
        ),
    ] = False,
) -> None:
    """Train a GAN, logging to TensorBoard and checkpointing every epoch."""
    from . import trainer  # heavy (TensorBoard, torchmetrics): imported only by the commands that train

    options = {  # Config checks every value (ConfigError exits 2, naming the flag)
        "dataset": dataset, "data_dir": data_dir, "download": download, "img_size": img_size, "channels": channels,
        "arch": arch, "latent_dim": latent_dim, "width": width, "spectral_norm": spectral_norm,
        "minibatch_std": minibatch_std, "conditional": conditional, "lr_d": lr_d,
        "lr_schedule": lr_schedule, "loss": loss, "r1": r1, "r1_every": r1_every, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "b1": b1, "b2": b2, "ema_decay": ema_decay, "ema_span": ema_span, "precision": precision, "compile": compile,
        "sync_batchnorm": sync_batchnorm, "max_batches": max_batches, "time_budget": time_budget,
        "run_dir": run_dir, "log_every": log_every, "sample_interval": sample_interval, "eval_every": eval_every,
        "eval_samples": eval_samples, "inception_fid": inception_fid, "inception_weights": inception_weights, "keep_last": keep_last, "seed": seed, "device": device,
    }  # fmt: skip
    with distributed_run(), user_errors():  # the error is shown before leaving the group, which a signal may cut
        if resume:
            run = Path(run_dir) if run_dir else newest_run()
            given = {name: value for name, value in options.items() if name != "run_dir" and was_given(ctx, name)}
            trainer.resume(run, given)
        else:  # the dataset's recipe fills what was neither typed nor set in the environment
            set_here = {
                name: value for name, value in options.items() if ctx.get_parameter_source(name).name != "DEFAULT"
            }
            trainer.train(Config.for_dataset(**set_here))


@contextlib.contextmanager
def distributed_run() -> Iterator[None]:
    """Under torchrun, leave the process group however training ends."""
    from . import distributed

    try:
        yield
    finally:
        distributed.stop()


DataDirOption = Annotated[str, typer.Option(envvar="MNIST_GAN_DATA_DIR", help="Dataset root (torchvision layout).")]
SourceOption = Annotated[Optional[Path], typer.Option(help="A checkpoint (.pt) or exported generator.pth.")]
RunDirOption = Annotated[
    Optional[Path], typer.Option(help="A run folder; default: the most recently modified run under runs/.")
]
DeviceOption = Annotated[str, typer.Option(callback=choice(DEVICES), help="Device to sample on.")]
SeedOption = Annotated[int, typer.Option(min=0, max=2**31 - 1, help="Noise seed; the same seed gives the same images.")]


@app.command("plot-checkpoint")
def plot_checkpoint(
    checkpoint: SourceOption = None,
    run_dir: RunDirOption = None,
    grid: Annotated[int, typer.Option(min=1, max=32, help="Draw a grid x grid figure.")] = 8,
    out: Annotated[
        Optional[Path],
        typer.Option(
            callback=output_file(*FIGURE_SUFFIXES),
            help="Figure to write (.png, .pdf or .svg); default: a PNG beside the checkpoint.",
        ),
    ] = None,
    seed: SeedOption = 0,
    show: Annotated[bool, typer.Option(help="Also open a window when a display is available.")] = True,
    device: DeviceOption = "auto",
) -> None:
    """Render samples from the latest checkpoint of a run (or from --checkpoint) as a titled PNG."""
    with user_errors():
        source = checkpoints.resolve_source(checkpoint, run_dir)
        path = sampling.plot_checkpoint(source, out, grid=grid, seed=seed, show=show, device=device)
        console.print(f"saved {path}")


LabelOption = Annotated[
    Optional[int], typer.Option(min=0, help="Draw only this class (a run trained with --conditional).")
]


@app.command("generate")
def generate(
    checkpoint: SourceOption = None,
    run_dir: RunDirOption = None,
    num_images: Annotated[int, typer.Option(min=1, max=sampling.MAX_IMAGES, help="How many images.")] = 8,
    out: Annotated[
        Path,
        typer.Option(
            callback=output_file(".png", ".npz"),
            help=".png for a grid (up to 1,024 images), .npz for a uint8 array 'images' (N x H x W, or N x H x W x 3).",
        ),
    ] = Path("fake_images.png"),
    label: LabelOption = None,
    labels: Annotated[
        Optional[str], typer.Option(help="Classes to draw in turn, e.g. 0,3,7 (a conditional run).")
    ] = None,
    per_class: Annotated[
        int,
        typer.Option(
            min=0,
            max=100_000,
            help="N images of each class (or of --labels), a row per class; replaces --num-images.",
        ),
    ] = 0,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Sample images from a run (its best checkpoint, as `evaluate` scores it, else its latest), a checkpoint or an
    exported generator.pth; a conditional run draws the classes asked for."""
    with user_errors():
        wanted = class_list(label, labels)
        source = checkpoints.resolve_source(checkpoint, run_dir, prefer_best=True)
        with flags_renamed({"classes": "labels", "labels": "label" if label is not None else "labels"}):
            path = sampling.generate(
                source, out, num_images=num_images, seed=seed, device=device, labels=wanted, per_class=per_class
            )
        console.print(f"saved images from {source} to {path}")


@contextlib.contextmanager
def flags_renamed(names: dict[str, str]) -> Iterator[None]:
    """The library names its arguments in errors; where a command feeds one from a flag of another name, the
    error names the flag the user typed."""
    try:
        yield
    except ConfigError as error:
        error.field = names.get(error.field, error.field)
        raise


def class_list(label: Optional[int], labels: Optional[str]) -> Optional[list[int]]:
    """--label 7 or --labels 0,3,7 as a list of classes; None when neither is given."""
    if label is not None and labels is not None:
        raise ConfigError("give --label or --labels, not both", "labels")
    if labels is None:
        return None if label is None else [label]
    return int_list(labels, "labels")


def int_list(text: str, flag: str) -> list[int]:
    """0,3,7 as [0, 3, 7]: whole numbers from 0 to 2**31 - 1 (seeds and classes alike)."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"expected whole numbers separated by commas, like 0,3,7; got {text!r}", flag) from None
    low, high = LIMITS["seed"]
    outside = [value for value in values if not low <= value <= high]
    if outside:
        raise ConfigError(f"{outside[0]} is out of range: each value must be from {low} to {high:,}", flag)
    return values


@app.command("interpolate")
def interpolate_command(
    ctx: typer.Context,
    checkpoint: SourceOption = None,
    run_dir: RunDirOption = None,
    seeds: Annotated[str, typer.Option(help="Walk through the noise of these seeds in turn, e.g. 0,1,2.")] = "0,1",
    classes: Annotated[
        Optional[str],
        typer.Option(help="Instead, morph one noise (--seed) through these classes, e.g. 0,1,2 (a conditional run)."),
    ] = None,
    label: LabelOption = None,
    steps: Annotated[int, typer.Option(min=2, max=256, help="Images from one seed (or class) to the next.")] = 16,
    out: Annotated[
        Path,
        typer.Option(callback=output_file(".png", ".gif"), help=".png for a strip, .gif for an animation."),
    ] = Path("interpolation.gif"),
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Walk the latent space between seeds (spherical interpolation), or between classes of a conditional run.

    A run is drawn from as `generate` draws from it: its best checkpoint, else its latest."""
    with user_errors():
        walk_seeds = int_list(seeds, "seeds")
        walk_classes = None if classes is None else int_list(classes, "classes")
        if walk_classes is not None and was_given(ctx, "seeds"):
            raise ConfigError("--classes morphs one noise (--seed) through classes; it takes no --seeds", "seeds")
        source = checkpoints.resolve_source(checkpoint, run_dir, prefer_best=True)
        path = sampling.interpolate(
            source, out, walk_seeds, steps, label=label, classes=walk_classes, seed=seed, device=device
        )
        console.print(f"saved {path}")


@app.command("animate")
def animate_command(
    run_dir: Annotated[
        Optional[Path], typer.Argument(help="A run folder; default: the most recently modified run.")
    ] = None,
    out: Annotated[Path, typer.Option(callback=output_file(".gif"), help="The animation (.gif).")] = Path(
        "progress.gif"
    ),
    frame_ms: Annotated[int, typer.Option(min=10, max=10_000, help="Milliseconds per epoch.")] = 200,
) -> None:
    """The run's sample grid after each epoch (the same noise every time) as one animated GIF: training as a film."""
    from .plots import animate_run

    with user_errors():
        frames = animate_run(run_dir or newest_run(), out, frame_ms)
        console.print(f"saved {out}: {frames} epochs")


@app.command("train-evaluator")
def train_evaluator_command(
    dataset: Annotated[str, typer.Option(callback=choice(tuple(DATASETS)), help="Dataset to classify.")] = "mnist",
    data_dir: DataDirOption = DEFAULTS.data_dir,
    epochs: Annotated[int, typer.Option(min=1, max=100, help="Training epochs.")] = 4,
    out: Annotated[
        Optional[Path],
        typer.Option(
            callback=output_file(".pt"),
            help="Weights file (.pt); default: the one shipped in the package (MNIST, Fashion-MNIST) or "
            "DATA_DIR/.mnist_gan_cache/evaluator_DATASET.pt, where training finds it.",
        ),
    ] = None,
) -> None:
    """Train the classifier whose features the metrics use, and measure the real-data reference with it."""
    from . import evaluation
    from .evaluator import evaluator_path

    with user_errors():
        out = check_output(out or evaluator_path(dataset, data_dir), (".pt",))  # before the work, not after
        result = evaluation.build_evaluator(dataset, data_dir, out, epochs=epochs)
        console.print(f"saved {out}: test accuracy {result['test_accuracy']:.4f}")
        console.print(
            evaluation.metrics_table(
                {
                    "source": "real training images",
                    "dataset": dataset,
                    "num_images": result["num_images"],
                    "metrics": result["reference"],
                    "reference": result["reference"],
                }
            )
        )


@app.command("evaluate")
def evaluate_command(
    ctx: typer.Context,
    checkpoint: SourceOption = None,
    run_dir: RunDirOption = None,
    images: Annotated[
        Optional[Path],
        typer.Option(help="Score an .npz (as `generate` writes it) or .npy of uint8 images instead of a checkpoint."),
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option(help="Dataset to compare with; default: the checkpoint's (mnist for --images).")
    ] = None,
    data_dir: Annotated[
        Optional[str],
        typer.Option(
            envvar="MNIST_GAN_DATA_DIR",
            help="Dataset root; default: the one the run was trained with (for --images: MNIST_GAN_DATA_DIR, else data).",
        ),
    ] = None,
    num_images: Annotated[int, typer.Option(min=100, max=100_000, help="Images to generate and score.")] = 10_000,
    json_out: Annotated[
        Optional[Path],
        typer.Option("--json", callback=output_file(".json"), help="Also write the results as JSON here."),
    ] = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    inception_fid: InceptionFidOption = False,
    inception_weights: InceptionWeightsOption = "",
) -> None:
    """Score a run's best (else latest) checkpoint, a checkpoint, or images, beside the real-data reference."""
    from . import evaluation

    with user_errors():
        if dataset is not None:
            choice(tuple(DATASETS))(dataset)
        result = evaluation.evaluate(
            checkpoint=checkpoint,
            run_dir=run_dir,
            images=images,
            dataset=dataset,
            data_dir=data_dir if images is not None or was_given(ctx, "data_dir") else None,
            num_images=num_images,
            seed=seed,
            device=device,
            inception_fid=inception_fid,
            inception_weights=inception_weights,
        )
        typer.echo(rich_text(evaluation.metrics_table(result)))
        if json_out:
            write_text(json_out, json.dumps(result, indent=2))
            console.print(f"saved {json_out}")


@app.command("compare")
def compare_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders to compare.")],
    out: Annotated[
        Path,
        typer.Option(
            callback=output_file(*FIGURE_SUFFIXES),
            help="Figure with FID per epoch and loss curves side by side (.png, .pdf or .svg).",
        ),
    ] = Path("comparison.png"),
    markdown: Annotated[
        Optional[Path], typer.Option(callback=output_file(".md"), help="Also write the table as Markdown (.md) here.")
    ] = None,
) -> None:
    """Compare runs: the settings that differ, best and final FID, IS, coverage, wall time, and their curves."""
    from . import evaluation
    from .plots import plot_comparison

    with user_errors():
        comparison = evaluation.compare_runs(runs)
        typer.echo(rich_text(evaluation.comparison_table(comparison)))
        plot_comparison(comparison["summaries"], out)
        console.print(f"saved {out}")
        if markdown:
            write_text(markdown, evaluation.comparison_markdown(comparison))
            console.print(f"saved {markdown}")


def rich_text(renderable) -> str:
    """A rich table as text for standard output (wide enough not to wrap the numbers)."""
    capture = Console(width=200, record=True, file=io.StringIO())
    capture.print(renderable)
    return capture.export_text()


if __name__ == "__main__":
    app()
