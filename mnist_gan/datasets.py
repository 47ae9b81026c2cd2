"""The dataset table: every dataset mnist_gan trains on, in one place that the rest of the package asks.

Adding a dataset is one entry here and, when no module reads it yet, one loader module in mnist_gan/data/ with a
`load(name, data_dir, *, train, download, img_size, check)` function. Light on purpose (no torch): the CLI's help
and the Config read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Each dataset's recipe: the settings where it differs from Config's defaults, applied to whatever the user did not
# set (a new run from the CLI, Config.for_dataset). Why each differs: benchmarks/RESULTS.md, sections 10 to 14.
DIGITS = {"conditional": True}  # labelled: a conditional model scores better in the same minutes
# Garments: the MLP draws the typical garment of each class; a DCGAN their variety (section 14), in 6 epochs. Its
# generator swings more than the digits': a longer average.
GARMENTS = {**DIGITS, "arch": "dcgan", "batch_size": 64, "epochs": 6, "ema_span": 1 / 3, "ema_decay": 0.9999}
PHOTOS = {"arch": "dcgan", "batch_size": 64, "b1": 0.5, "b2": 0.999}  # the MLP draws colour blobs


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
    "cifar10": Dataset(3, 32, "cifar10", PHOTOS),
    "celeba": Dataset(3, 64, "celeba", PHOTOS),
    "folder": Dataset(3, 64, "folder", PHOTOS, classes="a folder's classes are its first-level sub-folders"),
}


def recipe_values(name: str) -> dict[str, list[str]]:
    """For one setting, the datasets whose recipe sets it: value -> names (for help text)."""
    values: dict[str, list[str]] = {}
    for dataset, spec in DATASETS.items():
        if name in spec.recipe:
            values.setdefault(format_value(spec.recipe[name]), []).append(dataset)
    return values


def format_value(value: Any) -> str:
    if isinstance(value, float) and 0 < value < 0.5 and abs(1 / value - round(1 / value)) < 1e-9:
        return f"1/{round(1 / value)}"  # 1/3, 1/9: as the recipe means it
    return str(value)
