"""CelebA: torchvision's reader on the aligned faces (<data-dir>/celeba/img_align_celeba/*.jpg and the list_*.txt
files beside them) for the split, then decoded, centre-cropped and resized once and cached like a folder's
images. Downloading goes through torchvision (Google Drive, which needs the gdown package and often refuses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from ..errors import DataError, dataset_unavailable
from . import folder

FOLDER = "celeba"
FILES = ("list_eval_partition.txt", "list_attr_celeba.txt", "identity_CelebA.txt", "list_bbox_celeba.txt",
         "list_landmarks_align_celeba.txt")  # fmt: skip
IMAGES = "img_align_celeba"


class PresentCelebA(datasets.CelebA):
    """torchvision's CelebA without the MD5 sums of the list files (torchvision then checks they exist), so that
    a copy of the same layout loads; the image archive keeps its MD5."""

    file_list = [(key, md5 if name.endswith(".zip") else None, name) for key, md5, name in datasets.CelebA.file_list]


def load(data_dir: str | Path, train: bool, download: bool, img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N x 3 x img_size x img_size, labels all 0: CelebA has attributes, not classes)."""
    base = Path(data_dir) / FOLDER
    present = (base / IMAGES).is_dir() and all((base / name).is_file() for name in FILES)
    try:
        dataset = PresentCelebA(str(data_dir), split="train" if train else "test", target_type=[],
                                download=download and not present)  # fmt: skip
    except Exception as error:  # offline, no gdown, a damaged list file...
        what_to_put = (
            f"Put {IMAGES}/ (the aligned JPEGs, img_align_celeba.zip unpacked) and {', '.join(FILES)} in {base}."
        )
        raise dataset_unavailable("celeba", data_dir, base, error, download, present, what_to_put) from None
    paths = [base / IMAGES / name for name in dataset.filename]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise DataError(f"{len(missing)} images listed in {base / FILES[0]} are missing, e.g. {missing[0]}")
    if not paths:
        raise DataError(f"{base / FILES[0]} lists no images for the {'train' if train else 'test'} split")
    return folder.prepare(base, paths, np.zeros(len(paths), dtype=np.int64), img_size)
