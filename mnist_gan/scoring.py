"""Scoring and comparing runs: the library side of `train-evaluator`, `evaluate` and `compare` (the metrics
themselves are metrics.py's)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table

from . import checkpoints, formats, runs
from .config import Config
from .data import class_names, fixed_subset, load_dataset
from .devices import resolve_device
from .errors import ConfigError, MnistGanError, NoEvaluator
from .evaluator import save_evaluator, train_evaluator
from .metrics import (
    CONDITIONAL_METRICS,
    EXTRA_METRICS,
    METRICS,
    QualityMeter,
    check_sample_count,
    quality_meter,
    sample_shares,
)
from .sampling import scoring_sample

log = logging.getLogger(__name__)
SUMMARY_KEYS = ("epoch", "fid", "inception_score", "classes_covered", "coverage")  # what a comparison row reads


def build_evaluator(
    dataset: str, data_dir: str | Path, out: Path, epochs: int = 0, background: str = "white"
) -> dict[str, Any]:
    """Train the evaluator, measure the real-data reference with it, and save both in one file, with the class
    names it was made for (a folder's), so that it is refused once the folder's classes change."""
    evaluator, accuracy = train_evaluator(dataset, data_dir, epochs=epochs, background=background)
    test_images, test_labels = load_dataset(dataset, data_dir, train=False, background=background)
    train_images, _ = load_dataset(dataset, data_dir, train=True, background=background)
    real = fixed_subset(train_images)
    reference = QualityMeter(evaluator, test_images, test_labels).score(real)
    save_evaluator(evaluator, out, dataset=dataset, test_accuracy=accuracy, reference=reference,
                   classes=class_names(dataset, data_dir))  # fmt: skip
    return {"test_accuracy": accuracy, "reference": reference, "num_images": len(real)}


def load_images_file(path: Path) -> torch.Tensor:
    """uint8 images from an .npz (`images`, as `generate` writes it, or its only array) or an .npy, as N x C x H x W.

    N x H x W, N x H x W x C and N x C x H x W (C = 1 or 3) are accepted; evaluate() matches the channels to
    the evaluator's.
    """
    path = Path(path)
    if not path.is_file():
        raise MnistGanError(f"--images {path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # an .npy
            array = loaded
        else:
            with loaded:
                names = list(loaded.keys())
                if not names:
                    raise MnistGanError(f"--images {path} holds no arrays")
                if "images" not in names and len(names) > 1:
                    raise MnistGanError(f"--images {path} has no 'images' array (it has {', '.join(names)})")
                array = loaded["images" if "images" in names else names[0]]
    except MnistGanError:
        raise
    except (
        Exception
    ) as error:  # a truncated zip, a PNG, a pickle: numpy raises many types, click turns EOFError into "Aborted."
        raise MnistGanError(
            f"--images {path} is not a readable .npz or .npy image array "
            f"({type(error).__name__}); write one with `python -m mnist_gan generate --out x.npz`"
        ) from None
    return as_image_batch(torch.from_numpy(np.ascontiguousarray(array)), path)


def as_image_batch(images: torch.Tensor, path: Path) -> torch.Tensor:
    if images.dtype != torch.uint8:
        raise MnistGanError(f"--images {path}: expected uint8 pixels (0..255), got {images.dtype}")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    elif images.dim() == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.permute(0, 3, 1, 2)  # channels last -> first
    if images.dim() != 4 or images.shape[1] not in (1, 3) or min(images.shape[2:]) < 8:
        raise MnistGanError(
            f"--images {path}: expected images N x H x W, N x H x W x C or N x C x H x W "
            f"(C = 1 or 3, at least 8 x 8 pixels), got {tuple(images.shape)}"
        )
    return images


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Images (uint8 or floats) with the evaluator's channel count: colour to grey as ITU-R 601 luma (PIL's
    convert("L")), grey to colour by repeating the plane."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey = (images.float() * weights).sum(1, keepdim=True)
    return grey.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else grey


def evaluate(
    *,
    checkpoint: Path | None = None,
    run_dir: Path | None = None,
    images: Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    num_images: int = 10_000,
    seed: int = 0,
    device: str = "auto",
    inception_fid: bool = False,
    inception_weights: str = "",
) -> dict[str, Any]:
    """Score a checkpoint, a run's best (else latest) checkpoint, or an .npz of images; with the real-data reference.
    inception_fid: also the standard FID (without an evaluator for the dataset, only that)."""
    torch_device = resolve_device(device)
    labels = None
    if images is not None:
        if checkpoint is not None or run_dir is not None:
            raise ConfigError("--images scores a file of images; it cannot be combined with --checkpoint or --run-dir")
        fake = load_images_file(images)
        check_sample_count(len(fake), f"--images {images}")  # before the evaluator and the test set are loaded
        source, dataset, data_dir, background = images, dataset or "mnist", data_dir or "data", "white"
    else:
        source = checkpoints.resolve_source(checkpoint, run_dir, prefer_best=True)
        generator, config, _ = checkpoints.load_generator(source, torch_device)
        dataset, data_dir = dataset or config.dataset, data_dir or config.data_dir  # default: the run's own data
        background = config.background
    metrics: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    try:
        size = fake.shape[-1] if images is not None else config.img_size  # the real side is scored at it
        meter = quality_meter(dataset, data_dir, torch_device, background=background, img_size=size)
    except NoEvaluator:
        if not inception_fid:
            raise
        meter = None
    if images is None:  # drawn once the real side is known: the classes are drawn in the test split's shares
        shares = sample_shares([meter] if meter else [])
        fake, labels = scoring_sample(generator, num_images, config.latent_dim, seed, shares)
    if meter is not None:
        metrics = meter.score(match_channels(fake, meter.evaluator.shape["channels"]), labels)
        reference = meter.reference
        if labels is not None:  # the class metrics of real training images, at the same count, as their reference
            train_images, train_labels = load_dataset(dataset, data_dir, img_size=config.img_size,
                                                      background=background)  # fmt: skip
            real, real_labels = fixed_subset(train_images, num_images), fixed_subset(train_labels, num_images)
            scored = meter.score(real, real_labels)
            reference = {**reference, **{name: scored[name] for name in CONDITIONAL_METRICS}}
    if inception_fid:
        from .inception import inception_meter  # torch-fidelity: only when asked for

        inception = inception_meter(dataset, data_dir, inception_weights, torch_device, background=background,
                                    img_size=fake.shape[-1])  # fmt: skip
        metrics |= inception.score(fake)
    return {"source": str(source), "dataset": dataset, "num_images": len(fake), "metrics": metrics,
            "reference": reference}  # fmt: skip


def metrics_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"{result['source']}: {result['num_images']:,} images vs the {result['dataset']} test split")
    table.add_column("metric")
    table.add_column("better", justify="center")
    table.add_column("generated", justify="right")
    table.add_column("real data (reference)", justify="right")
    for name, higher in (METRICS | CONDITIONAL_METRICS | EXTRA_METRICS).items():
        if name not in result["metrics"]:
            continue
        reference = result["reference"].get(name)
        table.add_row(
            name,
            "↑" if higher else "↓",
            format_value(result["metrics"][name]),
            "" if reference is None else format_value(reference),
        )
    return table


def format_value(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"


# ----------------------------------------------------------------------------------- comparing runs
def load_run_summary(run_dir: Path) -> dict[str, Any]:
    """A run's config, its metrics per epoch (metrics.jsonl) and its losses (TensorBoard)."""
    path = checkpoints.latest_checkpoint(run_dir)
    payload = formats.load(path, (formats.CHECKPOINT,))
    history = []
    for record in runs.read_metrics(run_dir):  # a killed run's half-written last line is skipped
        if all(isinstance(record.get(key), (int, float)) for key in SUMMARY_KEYS):
            history.append(record)
        else:
            log.warning(f"{run_dir / runs.METRICS_FILE}: a record without {', '.join(SUMMARY_KEYS)} was skipped")
    if not history:
        raise MnistGanError(
            f"{run_dir} has no complete records in {runs.METRICS_FILE}; train it with --eval-every 1 (the default)"
        )
    return {
        "run": str(run_dir),
        "config": formats.saved_config(payload).to_dict(),
        "history": history,
        "elapsed": formats.training_time(payload),
        "losses": read_losses(run_dir),
    }


def read_losses(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = [tag for tag in ("loss/generator", "loss/discriminator") if tag in events.Tags()["scalars"]]
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in tags}


def compare_runs(run_dirs: list[Path]) -> dict[str, Any]:
    """One row per run: the config values that differ, best and final FID, IS, coverage, epoch of the best, wall time."""
    summaries = [load_run_summary(Path(run)) for run in run_dirs]
    ignored = {"run_dir", "data_dir"}
    keys = [
        key
        for key in Config().to_dict()
        if key not in ignored and len({json.dumps(summary["config"].get(key)) for summary in summaries}) > 1
    ]
    rows = []
    for summary in summaries:
        history = summary["history"]
        best = min(history, key=lambda record: record["fid"])
        final = history[-1]
        rows.append(
            {
                "run": summary["run"],
                **{key: summary["config"].get(key) for key in keys},
                "best_fid": best["fid"],
                "best_epoch": best["epoch"],
                "final_fid": final["fid"],
                "final_is": final["inception_score"],
                "final_classes": final["classes_covered"],
                "final_coverage": final["coverage"],
                "minutes": summary["elapsed"] / 60,
            }
        )
    return {"differing": keys, "rows": rows, "summaries": summaries}


def comparison_table(comparison: dict[str, Any]) -> Table:
    table = Table(title="runs compared")
    columns = list(comparison["rows"][0])
    for column in columns:
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in comparison["rows"]:
        table.add_row(*(format_cell(row[column]) for column in columns))
    return table


def comparison_markdown(comparison: dict[str, Any]) -> str:
    columns = list(comparison["rows"][0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row[column]) for column in columns) + " |" for row in comparison["rows"]]
    return "\n".join(lines) + "\n"


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.4f}"
    return str(value)
