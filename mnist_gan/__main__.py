"""The command line: each command parses its flags and calls the library (cli.py holds the plumbing: logging,
option checks, errors as exit codes)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import checkpoints, sampling
from .cli import (
    choice,
    class_list,
    console,
    distributed_run,
    flags_renamed,
    int_list,
    main_parameters,
    output_file,
    rich_text,
    setup_logging,
    user_errors,
    was_given,
)  # fmt: skip
from .config import DEVICES, Config, background_colour
from .datasets import DATASETS
from .errors import ConfigError
from .evaluator import MIN_STEPS
from .files import check_output, write_text
from .plots import FIGURE_SUFFIXES, MAX_GRID_IMAGES
from .runs import newest_run

app = typer.Typer(
    help="Train GANs on MNIST and other image sets, watch them in TensorBoard, render and measure their samples.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.callback()(setup_logging)


# ----------------------------------------------------------------------------------- main: one flag per Config field
def main(ctx: typer.Context, resume: bool, **options: Any) -> None:
    """Train a GAN, logging to TensorBoard and checkpointing every epoch."""
    from . import trainer  # heavy (TensorBoard, torchmetrics): imported only by the commands that train

    source = {name: ctx.get_parameter_source(name).name for name in options}
    with distributed_run(), user_errors():  # the error is shown before leaving the group, which a signal may cut
        if resume:
            run = Path(options["run_dir"]) if options["run_dir"] else newest_run()
            trainer.resume(run, {name: value for name, value in options.items()
                                 if name != "run_dir" and source[name] == "COMMANDLINE"})  # fmt: skip
        else:  # the dataset's recipe fills what was neither typed nor set in the environment
            trainer.train(Config.for_dataset(**{name: value for name, value in options.items()
                                                if source[name] != "DEFAULT"}))  # fmt: skip


main.__signature__ = inspect.Signature(main_parameters())  # what typer reads: Config's fields as options
app.command("main")(main)


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
            help=f".png for a grid (up to {MAX_GRID_IMAGES:,} images), .npz for a uint8 array 'images' (N x H x W, "
            "or N x H x W x 3).",
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
    data_dir: DataDirOption = Config.data_dir,
    epochs: Annotated[
        int, typer.Option(min=0, max=1000, help=f"Training epochs; 0: at least 4, and at least {MIN_STEPS} updates.")
    ] = 0,
    out: Annotated[
        Optional[Path],
        typer.Option(
            callback=output_file(".pt"),
            help="Weights file (.pt); default: the one shipped in the package (MNIST, Fashion-MNIST) or "
            "DATA_DIR/.mnist_gan_cache/evaluator_DATASET.pt, where training finds it.",
        ),
    ] = None,
    background: Annotated[str, typer.Option(help=Config.__dataclass_fields__["background"].metadata["help"])] = "white",
) -> None:
    """Train the classifier whose features the metrics use, and measure the real-data reference with it."""
    from . import scoring
    from .evaluator import evaluator_path

    with user_errors():
        background_colour(background)
        out = check_output(out or evaluator_path(dataset, data_dir), (".pt",))  # before the work, not after
        result = scoring.build_evaluator(dataset, data_dir, out, epochs=epochs, background=background)
        console.print(f"saved {out}: test accuracy {result['test_accuracy']:.4f}")
        console.print(
            scoring.metrics_table(
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
    from . import scoring

    with user_errors():
        if dataset is not None:
            choice(tuple(DATASETS))(dataset)
        result = scoring.evaluate(
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
        typer.echo(rich_text(scoring.metrics_table(result)))
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
    from . import scoring
    from .plots import plot_comparison

    with user_errors():
        comparison = scoring.compare_runs(runs)
        typer.echo(rich_text(scoring.comparison_table(comparison)))
        plot_comparison(comparison["summaries"], out)
        console.print(f"saved {out}")
        if markdown:
            write_text(markdown, scoring.comparison_markdown(comparison))
            console.print(f"saved {markdown}")


if __name__ == "__main__":
    app()
