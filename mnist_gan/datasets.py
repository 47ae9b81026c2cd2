"""The dataset table: every dataset mnist_gan trains on, in one place that the rest of the package asks.

Adding a dataset is one entry here and, when no module reads it yet, one loader module in mnist_gan/data/ with a
`load(name, data_dir, *, train, download, img_size, check)` function. Light on purpose (no torch): the CLI's help
and the Config read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Each dataset's recipe: the settings where it differs from Config's defaults, applied to whatever the user did not
# set (a new run from the CLI, Config.for_dataset). Why each differs: benchmarks/RESULTS.md, sections 10 to 20.
LABELS = {"conditional": True}  # labelled data: a conditional model scores better in the same minutes
# Digits: the depth-2 DCGAN at batch 128 with R1 0.2 draws more variety than the MLP (recall 0.82 against 0.75) and
# scores better in fewer minutes (sections 19 and 20). Its epochs differ by less than FID on 500 samples can tell:
# best.pt is chosen on 2,000.
# Without labels (--no-conditional) it trains on 50 k-means clusters of the digits instead (section 22): FID 6.9-7.4
# where the plain unconditional DCGAN scores 10.6-14.9, in the same minutes.
DIGITS = {**LABELS, "arch": "dcgan", "batch_size": 128, "r1": 0.2, "epochs": 7, "eval_samples": 2000, "clusters": 50}
# Garments: the MLP draws the typical garment of each class; a DCGAN their variety (section 14), in 6 epochs. Its
# generator swings more than the digits': a longer average. Measured with the paper's DCGAN (depth 1).
GARMENTS = {**LABELS, "arch": "dcgan", "depth": 1, "batch_size": 64, "epochs": 6, "ema_span": 1 / 3,
            "ema_decay": 0.9999}  # fmt: skip
# Colour images: the MLP draws colour blobs; the DCGAN at batch 32, with the labels where there are any and a 3x3
# convolution after each stride-2 layer (depth 2, the default), draws emoji a person can name (measured on the
# emoji folder at equal minutes against batch 64 and 16, Adam 0.5/0.999, longer weight averages, depth 1 and
# class-conditional BatchNorm: RESULTS.md, sections 13 to 19).
PHOTOS = {"arch": "dcgan", "batch_size": 32}
LABELLED_PHOTOS = {**PHOTOS, **LABELS}
FOLDER = {**LABELLED_PHOTOS, "epochs": 60}  # the 3,400 emoji at 32 px: 4 minutes of a bf16 CPU


@dataclass(frozen=True)
class Dataset:
    channels: int
    size: int  # the images' own side in pixels
    loader: str  # the module of mnist_gan.data that reads it
    recipe: dict[str, Any] = field(default_factory=dict)
    shipped_evaluator: bool = False  # its evaluator comes with the package (else train-evaluator makes it)
    classes: str = ""  # where its classes come from, when a user provides them


DATASETS = {
    "mnist": Dataset(1, 28, "mnist", DIGITS, shipped_evaluator=True),
    "fashion-mnist": Dataset(1, 28, "mnist", GARMENTS, shipped_evaluator=True),
    "cifar10": Dataset(3, 32, "cifar10", LABELLED_PHOTOS),
    "celeba": Dataset(3, 64, "celeba", PHOTOS),
    "folder": Dataset(3, 64, "folder", FOLDER, classes="a folder's classes are its first-level sub-folders"),
}


def recipe_for(dataset: str, data_dir: str | Path) -> dict[str, Any]:
    """A dataset's recipe for the data in data_dir: a folder without classes trains an unconditional model."""
    spec = DATASETS[dataset]
    if spec.classes and not folder_classes(Path(data_dir)):
        return {**spec.recipe, "conditional": False}
    return spec.recipe


def recipe_values(name: str) -> dict[str, list[str]]:
    """For one setting, the datasets whose recipe sets it: value -> names (for help text)."""
    values: dict[str, list[str]] = {}
    for dataset, spec in DATASETS.items():
        if name in spec.recipe:
            values.setdefault(format_value(spec.recipe[name]), []).append(dataset)
    return values


def format_value(value: Any) -> str:
    repeating = isinstance(value, float) and len(str(value)) > 8  # 0.333...; not 0.2
    if repeating and 0 < value < 0.5 and abs(1 / value - round(1 / value)) < 1e-9:
        return f"1/{round(1 / value)}"  # 1/3, 1/9: as the recipe means it
    return str(value)


# A folder's layout, read here without torch: the recipe asks it whether the folder has classes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def find_images(root: Path) -> list[Path]:
    """Every file name with an image suffix under root, in a fixed order; hidden folders (our cache) are skipped."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [Path(folder) / name for name in sorted(files) if name.lower().endswith(IMAGE_SUFFIXES)]
    return found


def classes_of(root: Path, paths: list[Path]) -> list[str]:
    """The classes the image paths under root define: first-level sub-folders, when every image sits in one and
    there are at least two; else []."""
    tops = [path.relative_to(root).parts for path in paths]
    if any(len(parts) == 1 for parts in tops):
        return []
    names = sorted({parts[0] for parts in tops})
    return names if len(names) >= 2 else []


def folder_classes(root: Path) -> list[str]:
    """A folder's classes in label order (its first-level sub-folders), or [] when it has none."""
    return classes_of(root, find_images(root) if root.is_dir() else [])
