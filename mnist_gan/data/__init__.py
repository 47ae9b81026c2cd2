"""Datasets, one module per source (mnist: MNIST and Fashion-MNIST; folder: any folder of images), and the batches
training draws from them."""

from __future__ import annotations

from pathlib import Path

import torch

from .batches import batches_per_epoch, epoch_batches, fingerprint, resize, to_uint8, to_unit_range

__all__ = [
    "batches_per_epoch", "epoch_batches", "fingerprint", "load_dataset", "resize",
    "to_uint8", "to_unit_range",
]  # fmt: skip


def load_dataset(
    name: str, data_dir: str | Path, *, train: bool = True, img_size: int = 28, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels): images uint8 of shape (N, C, H, W), labels int64 of shape (N,).

    A missing dataset that cannot be fetched, or a damaged file, raises DataError naming the folder or the file.
    """
    if name == "folder":  # decoded at img_size once (crop, resize), then cached
        from . import folder

        return folder.load(data_dir, img_size)
    from . import mnist  # imported on use: the sources pull in torchvision, which sampling does not need

    sources = {"mnist": mnist, "fashion-mnist": mnist}  # dataset name -> the module that reads it
    images, labels = sources[name].load(name, data_dir, train, download)
    if img_size != images.shape[-1]:
        images = resize(images, img_size)
    return images.contiguous(), labels
