"""MNIST and Fashion-MNIST: the IDX files in torchvision's layout (<data-dir>/MNIST/raw/...), plain or gzipped,
checked so that a missing, truncated or foreign file is named as such. torchvision is imported only to download:
importing it pulls in torch._dynamo, about 2.5 s of every process's start (benchmarks/RESULTS.md, section 13)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, dataset_unavailable
from . import Request, at_size

FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # torchvision's class names, its folder names
NUM_CLASSES = 10
IDX_MAGIC = {"images": 2051, "labels": 2049}  # big-endian header of the IDX files: uint8 data, 3 or 1 dimensions


def load(request: Request) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N x 1 x img_size x img_size, labels int64 N) of one split; downloaded by torchvision when
    missing and allowed."""
    name, data_dir, download = request.name, request.data_dir, request.download
    raw = raw_folder(name, data_dir)
    files = split_files(raw, request.train)
    if not all(found(path) for path in files.values()):
        try:
            fetch(name, data_dir, request.train, download)
        except Exception as error:  # torchvision raises RuntimeError, URLError, OSError... when offline
            raise dataset_unavailable(name, data_dir, raw, error, download, False, what_to_put(name, raw)) from None
    images = torch.from_numpy(read_idx(files["images"], "images")).unsqueeze(1)
    labels = torch.from_numpy(read_idx(files["labels"], "labels").astype(np.int64))
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < NUM_CLASSES:
        raise DataError(
            f"{files['labels']} is damaged: labels must be 0..{NUM_CLASSES - 1}, "
            f"found {int(labels.min())}..{int(labels.max())}"
        )
    return at_size(images, labels, request)


def fetch(name: str, data_dir: Path, train: bool, download: bool) -> None:
    if not download:
        raise FileNotFoundError("no IDX files")
    from torchvision import datasets

    getattr(datasets, FOLDERS[name])(root=str(data_dir), train=train, download=True)


def raw_folder(name: str, data_dir: str | Path) -> Path:
    return Path(data_dir) / FOLDERS[name] / "raw"


def split_files(raw: Path, train: bool) -> dict[str, Path]:
    split = "train" if train else "t10k"
    return {"images": raw / f"{split}-images-idx3-ubyte", "labels": raw / f"{split}-labels-idx1-ubyte"}


def found(path: Path) -> Path | None:
    """The file itself, else its .gz (read as it is: a read-only folder of archives works too)."""
    archive = path.with_name(f"{path.name}.gz")
    return path if path.is_file() else archive if archive.is_file() else None


def read_idx(path: Path, kind: str) -> np.ndarray:
    """An IDX file's array. The header's sizes must match the data: a truncated or foreign file is named, not
    misreported as missing."""
    source = found(path) or path
    try:
        content = gzip.decompress(source.read_bytes()) if source.suffix == ".gz" else source.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {source}: {error.strerror or error}") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"could not unpack {source}: {error}") from None
    dimensions = 3 if kind == "images" else 1
    if len(content) < 4 + 4 * dimensions or int.from_bytes(content[:4], "big") != IDX_MAGIC[kind]:
        raise DataError(f"{source} is not an MNIST {kind} file (its header is wrong); replace it with the original")
    shape = [int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions)]
    expected = 4 + 4 * dimensions + int(np.prod(shape))
    if len(content) != expected:
        raise DataError(
            f"{source} is truncated or damaged: its header promises {expected:,} bytes "
            f"({' x '.join(map(str, shape))}), the file has {len(content):,}; replace it with the original"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape).copy()


def what_to_put(name: str, raw: Path) -> str:
    files = ", ".join(
        f"{split}-{kind}-idx{dims}-ubyte"
        for split in ("train", "t10k")
        for kind, dims in (("images", 3), ("labels", 1))
    )
    return (
        f"Put {files} (or their .gz) in {raw}, or pass --data-dir (env MNIST_GAN_DATA_DIR) pointing at a folder that "
        f"holds {FOLDERS[name]}/raw."
    )
