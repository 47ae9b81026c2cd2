"""Datasets, one module per source (mnist: MNIST and Fashion-MNIST; cifar10; celeba; folder: any folder of images),
and the batches training draws from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..config import DATASETS
from .batches import batches_per_epoch, epoch_batches, fingerprint, resize, to_uint8, to_unit_range

__all__ = [
    "batches_per_epoch", "epoch_batches", "fingerprint", "load_dataset", "resize",
    "to_uint8", "to_unit_range",
]  # fmt: skip


def load_dataset(
    name: str,
    data_dir: str | Path,
    *,
    train: bool = True,
    img_size: int = 0,
    download: bool = True,
    check: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels): images uint8 of shape (N, C, H, W), labels int64 of shape (N,); img_size 0 is the
    dataset's own size. check(images, labels), when given, may refuse the data before any of it is cached.

    A missing dataset that cannot be fetched, or a damaged file, raises DataError naming the folder or the file.
    """
    img_size = img_size or DATASETS[name][1]
    # Imported on use: the sources pull in torchvision, which sampling does not need.
    if name == "folder":  # decoded at img_size once (crop, resize), then cached; every 10th image is the test split
        from . import folder

        return folder.load(data_dir, img_size, train, check)
    if name == "celeba":  # the same, for the split's files
        from . import celeba

        return celeba.load(data_dir, train, download, img_size, check)
    if name == "cifar10":
        from . import cifar10

        images, labels = cifar10.load(data_dir, train, download)
    else:
        from . import mnist

        images, labels = mnist.load(name, data_dir, train, download)
    if img_size != images.shape[-1]:
        images = resize(images, img_size)
    if check is not None:
        check(images, labels)
    return images.contiguous(), labels
