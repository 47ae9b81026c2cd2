"""CIFAR-10: the python batches in <data-dir>/cifar-10-batches-py/, read without running anything they hold, and
downloaded by torchvision (its archive's MD5 checked) when missing.

The batches are pickles, and unpickling a crafted file can run any code. A restricted unpickler admits only what
the release holds (numpy arrays, lists, strings, numbers), so a same-layout copy loads and anything else is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, dataset_unavailable
from . import Request, at_size

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_FILES = ("test_batch",)
NUM_CLASSES = 10
PIXELS = 3 * 32 * 32  # a row: the R, G and B planes of a 32 x 32 image
# The globals a CIFAR-10 batch pickle names: numpy's array reconstruction (as numpy 1 and 2 spell it, and as
# pickle protocols 2 to 5 write it), and the codec Python 3's protocol 2 writes bytes with.
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}  # fmt: skip


class BatchUnpickler(pickle.Unpickler):
    """Unpickles the arrays, lists and strings of a CIFAR batch; any other class or function is refused."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which no CIFAR-10 batch holds")


def load(request: Request) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N x 3 x img_size x img_size, labels int64 N) of one split."""
    data_dir, train, download = request.data_dir, request.train, request.download
    folder = Path(data_dir) / FOLDER
    files = TRAIN_FILES + TEST_FILES
    present = all((folder / name).is_file() for name in files)
    if not present:
        try:
            if not download:
                raise FileNotFoundError(folder)
            fetch(data_dir)
        except Exception as error:  # offline: URLError, OSError...
            raise dataset_unavailable(
                "cifar10", data_dir, folder, error, download, present, what_to_put(folder)
            ) from None
    batches = [read_batch(folder / name) for name in (TRAIN_FILES if train else TEST_FILES)]
    images = np.concatenate([data for data, _ in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([labels for _, labels in batches])
    return at_size(torch.from_numpy(images), torch.from_numpy(labels), request)


def what_to_put(folder: Path) -> str:
    return (
        f"Put {', '.join(TRAIN_FILES + TEST_FILES)} (the python version, cifar-10-python.tar.gz unpacked) in {folder}."
    )


def fetch(data_dir: str | Path) -> None:
    """Download and unpack the release; torchvision checks the archive's MD5."""
    from torchvision import datasets
    from torchvision.datasets.utils import download_and_extract_archive

    release = datasets.CIFAR10
    download_and_extract_archive(release.url, str(data_dir), filename=release.filename, md5=release.tgz_md5)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 rows N x 3072, int64 labels N) of one batch file, checked against the release's layout."""
    try:
        with open(path, "rb") as file:
            batch = BatchUnpickler(file, encoding="latin1").load()
    except Exception as error:  # a crafted or damaged pickle: UnpicklingError, EOFError, ValueError...
        raise DataError(f"{path} is not a CIFAR-10 batch: {type(error).__name__}: {error}") from None
    data = batch.get("data") if isinstance(batch, dict) else None
    labels = batch.get("labels") if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == PIXELS):
        raise DataError(f"{path} is not a CIFAR-10 batch: it needs 'data', uint8 rows of {PIXELS} pixels")
    if not (isinstance(labels, list) and len(labels) == len(data) and all(type(label) is int for label in labels)):
        raise DataError(f"{path} is not a CIFAR-10 batch: it needs 'labels', one whole number per image")
    labels = np.array(labels, dtype=np.int64)
    if len(labels) and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise DataError(f"{path} is damaged: labels must be 0..{NUM_CLASSES - 1}, found {labels.min()}..{labels.max()}")
    return np.ascontiguousarray(data), labels
