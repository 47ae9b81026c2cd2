"""MNIST and Fashion-MNIST: the IDX files in torchvision's layout (<data-dir>/MNIST/raw/...), read by torchvision,
checked here so that a missing, truncated or foreign file is named as such."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets
from torchvision.datasets.utils import extract_archive

from ..errors import DataError, dataset_unavailable
from . import Request, at_size

TORCHVISION_DATASETS = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}
NUM_CLASSES = 10
IDX_MAGIC = {"images": 2051, "labels": 2049}  # big-endian header of the IDX files: uint8 data, 3 or 1 dimensions


def load(request: Request) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N x 1 x img_size x img_size, labels int64 N) of one split; downloaded by torchvision when
    missing."""
    name, data_dir, train, download = request.name, request.data_dir, request.train, request.download
    raw = raw_folder(name, data_dir)
    files = split_files(raw, train)
    extract_archives(raw)
    if all(path.is_file() for path in files.values()):
        for kind, path in files.items():
            check_idx_file(path, kind)
        download = False  # everything is here: never touch the network
    try:
        dataset = TORCHVISION_DATASETS[name](root=str(data_dir), train=train, download=download)
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError... when offline
        present = all(path.is_file() for path in files.values())
        raise dataset_unavailable(name, data_dir, raw, error, download, present, what_to_put(name, raw)) from None
    labels = dataset.targets.clone()
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < NUM_CLASSES:
        raise DataError(
            f"{files['labels']} is damaged: labels must be 0..{NUM_CLASSES - 1}, "
            f"found {int(labels.min())}..{int(labels.max())}"
        )
    return at_size(dataset.data.unsqueeze(1), labels, request)


def raw_folder(name: str, data_dir: str | Path) -> Path:
    return Path(data_dir) / TORCHVISION_DATASETS[name].__name__ / "raw"


def split_files(raw: Path, train: bool) -> dict[str, Path]:
    split = "train" if train else "t10k"
    return {"images": raw / f"{split}-images-idx3-ubyte", "labels": raw / f"{split}-labels-idx1-ubyte"}


def extract_archives(raw: Path) -> None:
    """Unpack the .gz files the datasets are distributed as (offline; torchvision only does it after a download)."""
    for archive in raw.glob("*-ubyte.gz") if raw.is_dir() else []:
        if not archive.with_suffix("").exists():
            try:
                extract_archive(str(archive), str(raw))
            except Exception as error:  # a truncated archive, or a read-only folder
                raise DataError(f"could not unpack {archive}: {error}") from None


def check_idx_file(path: Path, kind: str) -> None:
    """The header's sizes must match the file's: a truncated or foreign file is named, not misreported as missing."""
    try:
        with open(path, "rb") as file:
            header = file.read(16)
        size = path.stat().st_size
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    dimensions = 3 if kind == "images" else 1
    if len(header) < 4 + 4 * dimensions or int.from_bytes(header[:4], "big") != IDX_MAGIC[kind]:
        raise DataError(f"{path} is not an MNIST {kind} file (its header is wrong); replace it with the original")
    shape = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions)]
    expected = 4 + 4 * dimensions + torch.Size(shape).numel()
    if size != expected:
        raise DataError(
            f"{path} is truncated or damaged: its header promises {expected:,} bytes "
            f"({' x '.join(map(str, shape))}), the file has {size:,}; replace it with the original"
        )


def what_to_put(name: str, raw: Path) -> str:
    files = ", ".join(
        f"{split}-{kind}-idx{dims}-ubyte"
        for split in ("train", "t10k")
        for kind, dims in (("images", 3), ("labels", 1))
    )
    return (
        f"Put {files} (or their .gz) in {raw}, or pass --data-dir (env MNIST_GAN_DATA_DIR) pointing at a folder that "
        f"holds {TORCHVISION_DATASETS[name].__name__}/raw."
    )
