"""CelebA: the aligned faces (<data-dir>/celeba/img_align_celeba/*.jpg) of the split that list_eval_partition.txt
assigns, decoded, centre-cropped and resized once and cached like a folder's images. Only that list is read (the
attribute, identity and landmark lists are not used). Downloading goes through torchvision (Google Drive, which
needs the gdown package and often refuses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, dataset_unavailable
from . import Request, folder

FOLDER = "celeba"
PARTITION = "list_eval_partition.txt"  # "000001.jpg 0" per image: 0 train, 1 validation, 2 test
IMAGES = "img_align_celeba"
SPLITS = {True: 0, False: 2}  # train: the training partition; test: the test partition


def load(request: Request) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N x 3 x img_size x img_size, labels all 0: CelebA has attributes, not classes)."""
    data_dir, train, download = request.data_dir, request.train, request.download
    base = Path(data_dir) / FOLDER
    present = (base / IMAGES).is_dir() and (base / PARTITION).is_file()
    if not present:
        try:
            if not download:
                raise FileNotFoundError(base)
            fetch(data_dir)
        except Exception as error:  # offline, no gdown...
            what_to_put = f"Put {IMAGES}/ (the aligned JPEGs, img_align_celeba.zip unpacked) and {PARTITION} in {base}."
            raise dataset_unavailable("celeba", data_dir, base, error, download, present, what_to_put) from None
    names = split_names(base / PARTITION, SPLITS[train])
    paths = [base / IMAGES / name for name in names]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise DataError(f"{len(missing)} images listed in {base / PARTITION} are missing, e.g. {missing[0]}")
    split = "train" if train else "test"
    return folder.prepare(
        base,
        f"celeba_{split}",
        paths,
        np.zeros(len(paths), dtype=np.int64),
        request.img_size,
        request.check,
        request.background,
    )


def fetch(data_dir: str | Path) -> None:
    from torchvision import datasets

    datasets.CelebA(str(data_dir), split="all", target_type=[], download=True)


def split_names(partition: Path, split: int) -> list[str]:
    """The image names of one partition, each line checked: a damaged list is named with its line."""
    try:
        lines = partition.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {partition}: {error}") from None
    names = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2") or "/" in fields[0] or fields[0].startswith("."):
            raise DataError(f"{partition} is damaged: line {number} should be 'IMAGE.jpg 0|1|2', it is {line[:80]!r}")
        if int(fields[1]) == split:
            names.append(fields[0])
    if not names:
        kind = "is empty" if not any(line.strip() for line in lines) else f"lists no images of partition {split}"
        raise DataError(f"{partition} {kind}: it should list every image with its partition (0 train, 2 test)")
    return names
