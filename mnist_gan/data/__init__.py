"""Datasets, one module per source (mnist: MNIST and Fashion-MNIST; cifar10; celeba; folder: any folder of images),
and the batches training draws from them. Which module reads which dataset is the dataset table's (datasets.py);
each has load(request) -> (images, labels)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import background_colour
from ..datasets import DATASETS
from .batches import (
    batches_per_epoch,
    epoch_batches,
    fingerprint,
    fixed_subset,
    resize,
    to_uint8,
    to_unit_range,
)  # fmt: skip

__all__ = [
    "batches_per_epoch", "class_names", "epoch_batches", "fingerprint", "fixed_subset", "load_dataset", "resize",
    "to_uint8", "to_unit_range",
]  # fmt: skip
Check = Callable[[torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class Request:
    """What a loader module's load(request) is asked for: one split of a dataset at a size, with the check that may
    refuse it before it is cached and the colour behind transparent pixels."""

    name: str
    data_dir: Path
    train: bool
    download: bool
    img_size: int
    check: Check | None
    background: tuple[int, int, int]


def load_dataset(
    name: str,
    data_dir: str | Path,
    *,
    train: bool = True,
    img_size: int = 0,
    download: bool = True,
    check: Check | None = None,
    background: str = "white",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels): images uint8 of shape (N, C, H, W), labels int64 of shape (N,); img_size 0 is the
    dataset's own size. check(images, labels), when given, may refuse the data before any of it is cached;
    background (white, black or R,G,B) is the colour behind transparent pixels.

    A missing dataset that cannot be fetched, or a damaged file, raises DataError naming the folder or the file.
    """
    request = Request(name, Path(data_dir), train, download, img_size or DATASETS[name].size, check,
                      background_colour(background))  # fmt: skip
    images, labels = loader(name).load(request)
    return images.contiguous(), labels


def class_names(name: str, data_dir: str | Path) -> list[str] | None:
    """The class names a user's data defines (a folder's sub-folders); None where the dataset fixes them or has
    none."""
    read = getattr(loader(name), "class_names", None)
    return (read(data_dir) or None) if read else None


def loader(name: str):
    """The module that reads a dataset, imported on use: the sources pull in torchvision, which sampling does not
    need."""
    return importlib.import_module(f".{DATASETS[name].loader}", __name__)


def at_size(images: torch.Tensor, labels: torch.Tensor, request: Request) -> tuple[torch.Tensor, torch.Tensor]:
    """A source read whole at its own size: resized (e.g. 28 -> 32 for a 32x32 model), then checked."""
    if request.img_size != images.shape[-1]:
        images = resize(images, request.img_size)
    if request.check is not None:
        request.check(images, labels)
    return images, labels
