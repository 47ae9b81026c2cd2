"""The dataset as one uint8 tensor, batched by indexing: no per-image Python work in the training loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets

from .errors import DataError

TORCHVISION_DATASETS = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}


def load_dataset(name: str, data_dir: str | Path, *, train: bool = True, img_size: int = 28,
                 download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels): images uint8 of shape (N, C, H, W), labels int64 of shape (N,).

    torchvision reads the files (and downloads them when missing); a missing dataset that cannot
    be fetched raises DataError naming the folder and the files expected.
    """
    dataset_class = TORCHVISION_DATASETS[name]
    try:
        dataset = dataset_class(root=str(data_dir), train=train, download=download)
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError... when offline
        reason = f"could not be downloaded: {error}" if download else "downloading is off (--no-download)"
        raise DataError(missing_data_message(name, data_dir, reason)) from None
    images = dataset.data.unsqueeze(1)  # (N, 1, 28, 28) uint8
    if img_size != images.shape[-1]:
        images = resize(images, img_size)
    return images.contiguous(), dataset.targets.clone()


def missing_data_message(name: str, data_dir: str | Path, reason: str) -> str:
    folder = Path(data_dir) / TORCHVISION_DATASETS[name].__name__ / "raw"
    files = ", ".join(f"{split}-{kind}-idx{dims}-ubyte" for split in ("train", "t10k")
                      for kind, dims in (("images", 3), ("labels", 1)))
    return (f"{name} is not in --data-dir {str(data_dir)!r} and {reason}.\n"
            f"Put {files} (or their .gz) in {folder}, or pass --data-dir (env MNIST_GAN_DATA_DIR) "
            f"pointing at a folder that holds {TORCHVISION_DATASETS[name].__name__}/raw.")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch once at load time (e.g. 28 -> 32 for a 32x32 model)."""
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range of the generator's Tanh."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return images.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def batches_per_epoch(num_images: int, batch_size: int, max_batches: int = 0) -> int:
    """Full batches only (BatchNorm and images/s stay steady); max_batches > 0 caps the count."""
    full = num_images // batch_size
    if full == 0:
        raise DataError(f"batch size {batch_size} is larger than the dataset ({num_images} images)")
    return min(full, max_batches) if max_batches else full


def epoch_batches(images: torch.Tensor, *, batch_size: int, seed: int, epoch: int, start: int = 0,
                  max_batches: int = 0) -> Iterator[torch.Tensor]:
    """Yield the epoch's shuffled batches in [-1, 1] from batch `start` on.

    The order depends only on (seed, epoch), so a resumed run sees exactly the batches an
    uninterrupted one would.
    """
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    order = order.to(images.device)
    for index in range(start, batches_per_epoch(len(images), batch_size, max_batches)):
        yield to_unit_range(images[order[index * batch_size:(index + 1) * batch_size]])
