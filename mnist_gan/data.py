"""The dataset as one uint8 tensor, batched by indexing: no per-image Python work in the training loop."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets
from torchvision.datasets.utils import extract_archive

from .errors import DataError

TORCHVISION_DATASETS = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}
NUM_CLASSES = 10
IDX_MAGIC = {"images": 2051, "labels": 2049}  # big-endian header of the IDX files: uint8 data, 3 or 1 dimensions
RESIZE_CHUNK = 2048  # images resized at a time: memory stays at a few MB of floats, whatever the size


def load_dataset(
    name: str, data_dir: str | Path, *, train: bool = True, img_size: int = 28, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels): images uint8 of shape (N, C, H, W), labels int64 of shape (N,).

    torchvision reads the files (and downloads them when missing); a missing dataset that cannot
    be fetched, or a damaged file, raises DataError naming the folder or the file.
    """
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
        if all(path.is_file() for path in files.values()):
            raise DataError(f"could not read {name} from {raw}: {error}") from None
        reason = f"could not be downloaded: {error}" if download else "downloading is off (--no-download)"
        raise DataError(missing_data_message(name, data_dir, reason)) from None
    labels = dataset.targets.clone()
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < NUM_CLASSES:
        raise DataError(
            f"{files['labels']} is damaged: labels must be 0..{NUM_CLASSES - 1}, "
            f"found {int(labels.min())}..{int(labels.max())}"
        )
    images = dataset.data.unsqueeze(1)  # (N, 1, 28, 28) uint8
    if img_size != images.shape[-1]:
        images = resize(images, img_size)
    return images.contiguous(), labels


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


def missing_data_message(name: str, data_dir: str | Path, reason: str) -> str:
    folder = raw_folder(name, data_dir)
    files = ", ".join(
        f"{split}-{kind}-idx{dims}-ubyte"
        for split in ("train", "t10k")
        for kind, dims in (("images", 3), ("labels", 1))
    )
    return (
        f"{name} is not in --data-dir {str(data_dir)!r} and {reason}.\n"
        f"Put {files} (or their .gz) in {folder}, or pass --data-dir (env MNIST_GAN_DATA_DIR) "
        f"pointing at a folder that holds {TORCHVISION_DATASETS[name].__name__}/raw."
    )


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 set once at load time (e.g. 28 -> 32 for a 32x32 model), a chunk at a time."""
    resized = torch.empty(len(images), images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, len(images), RESIZE_CHUNK):
        chunk = images[start : start + RESIZE_CHUNK].float()
        chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        resized[start : start + RESIZE_CHUNK] = chunk.round().clamp(0, 255).to(torch.uint8)
    return resized


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A short digest of the training set (its size, labels and a sample of its pixels): a resumed run
    checks it trains on the same data."""
    digest = hashlib.sha256(f"{tuple(images.shape)}".encode())
    digest.update(labels.cpu().numpy().tobytes())
    digest.update(images[:: max(1, len(images) // 1000)].cpu().numpy().tobytes())
    return f"{len(images)} images, sha256 {digest.hexdigest()[:16]}"


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


def epoch_batches(
    images: torch.Tensor, *, batch_size: int, seed: int, epoch: int, start: int = 0, max_batches: int = 0
) -> Iterator[torch.Tensor]:
    """Yield the epoch's shuffled batches in [-1, 1] from batch `start` on.

    The order depends only on (seed, epoch), so a resumed run sees exactly the batches an
    uninterrupted one would.
    """
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    order = order.to(images.device)
    for index in range(start, batches_per_epoch(len(images), batch_size, max_batches)):
        yield to_unit_range(images[order[index * batch_size : (index + 1) * batch_size]])
