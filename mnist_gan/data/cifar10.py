"""CIFAR-10: torchvision's reader on the python batches in <data-dir>/cifar-10-batches-py/, downloaded (and its
archive checked) by torchvision when missing."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets

from ..errors import DataError, dataset_unavailable

FOLDER = "cifar-10-batches-py"
FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")


class PresentCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10 without the MD5 sums of the unpacked files (torchvision then checks they exist), so
    that a copy repacked in the same format loads; a download still verifies the archive's MD5."""

    train_list = [[name, None] for name, _ in datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}


def load(data_dir: str | Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N x 3 x 32 x 32, labels int64 N) of one split."""
    folder = Path(data_dir) / FOLDER
    present = all((folder / name).is_file() for name in FILES)
    try:
        dataset = PresentCIFAR10(root=str(data_dir), train=train, download=download and not present)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(dataset.targets, dtype=torch.int64)
    except Exception as error:  # offline: URLError, OSError...; damaged: pickle, KeyError, ValueError...
        what_to_put = f"Put {', '.join(FILES)} (the python version, cifar-10-python.tar.gz unpacked) in {folder}."
        raise dataset_unavailable("cifar10", data_dir, folder, error, download, present, what_to_put) from None
    if len(images) != len(labels) or tuple(images.shape[1:]) != (3, 32, 32):
        raise DataError(f"{folder} holds {tuple(images.shape)} images and {len(labels)} labels, not CIFAR-10's")
    return images, labels
