"""Any folder of images (png, jpg, webp, ...), searched recursively. Each image is decoded once with Pillow,
converted to RGB, centre-cropped to a square and resized; the result is cached as one uint8 array beside the
data (<folder>/.mnist_gan_cache/), which later runs memory-map instead of decoding again.

First-level sub-folders, when every image sits in one and there are at least two, are classes (labels 0, 1, ...
in sorted order, as torchvision's ImageFolder); otherwise every image has label 0. Every 10th image (in sorted
order) is held out as the test split, which the quality metrics compare with; training uses the other nine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CACHE_DIR = ".mnist_gan_cache"
CACHE_VERSION = 1  # bump when decoding changes, so old caches are not reused
TEST_EVERY = 10  # every 10th image is the test split


def load(data_dir: str | Path, img_size: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N x 3 x img_size x img_size, labels int64 N) of one split of the images under data_dir."""
    images, labels = load_all(data_dir, img_size)
    if len(images) < TEST_EVERY:
        raise DataError(f"{data_dir} has {len(images)} readable images; a folder needs at least {TEST_EVERY}")
    test = torch.arange(len(images)) % TEST_EVERY == TEST_EVERY - 1
    split = ~test if train else test
    return images[split], labels[split]


def load_all(data_dir: str | Path, img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every readable image under data_dir, in sorted order, with its label."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"--data-dir {root}: no such folder (--dataset folder reads the images inside it)")
    paths = find_images(root)
    if not paths:
        raise DataError(f"no images in {root} (searched recursively for {', '.join(IMAGE_SUFFIXES)})")
    return prepare(root, paths, folder_labels(root, paths), img_size)


def prepare(root: Path, paths: list[Path], labels: np.ndarray, img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The images at paths (under root) decoded at img_size, from root's cache when it is up to date."""
    cache = root / CACHE_DIR / cache_key(root, paths, img_size)
    images_file, labels_file = cache.with_suffix(".images.npy"), cache.with_suffix(".labels.npy")
    if images_file.is_file() and labels_file.is_file():
        try:  # copy-on-write memory map: pages are read as batches need them
            cached_images, cached_labels = np.load(images_file, mmap_mode="c"), np.load(labels_file)
        except (OSError, ValueError) as error:
            log.warning(f"ignoring a damaged cache {images_file}: {error}")
        else:
            if len(cached_images) == len(cached_labels) and cached_images.shape[1:] == (3, img_size, img_size):
                return torch.from_numpy(cached_images), torch.from_numpy(cached_labels)
    images, kept = decode_all(paths, img_size)
    labels = labels[kept]
    write_cache(labels_file, labels)
    write_cache(images_file, images)  # last: the images file is what marks a complete cache
    return torch.from_numpy(images), torch.from_numpy(labels)


def find_images(root: Path) -> list[Path]:
    """Every file with an image suffix under root, in a fixed order; our own cache and hidden folders are skipped."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [Path(folder) / name for name in sorted(files) if name.lower().endswith(IMAGE_SUFFIXES)]
    return found


def folder_labels(root: Path, paths: list[Path]) -> np.ndarray:
    """Class index of each image from its first-level sub-folder, or all 0 when the folder has no classes."""
    tops = [path.relative_to(root).parts for path in paths]
    classes = sorted({parts[0] for parts in tops if len(parts) > 1})
    if len(classes) < 2 or any(len(parts) == 1 for parts in tops):
        return np.zeros(len(paths), dtype=np.int64)
    index = {name: number for number, name in enumerate(classes)}
    return np.array([index[parts[0]] for parts in tops], dtype=np.int64)


def cache_key(root: Path, paths: list[Path], img_size: int) -> str:
    """Changes when any image is added, removed, replaced or touched, or the size or decoding changes."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} {img_size}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return f"images_{img_size}px_{digest.hexdigest()[:16]}"


def decode_all(paths: list[Path], img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode every image; unreadable ones are skipped and counted in one warning. Returns (images, kept indices)."""
    images = np.empty((len(paths), 3, img_size, img_size), dtype=np.uint8)
    kept, skipped = [], []
    for number, path in enumerate(paths):
        try:
            images[len(kept)] = decode(path, img_size)
        except (
            OSError,
            ValueError,
            SyntaxError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as error:
            skipped.append(f"{path} ({type(error).__name__}: {error})")
            continue
        kept.append(number)
    if skipped:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        log.warning(f"skipped {len(skipped)} of {len(paths)} image files that could not be read: {shown}")
    if not kept:
        raise DataError(f"none of the {len(paths)} image files under {paths[0].parent} could be read")
    return images[: len(kept)], np.array(kept, dtype=np.int64)


def decode(path: Path, img_size: int) -> np.ndarray:
    """One image as uint8 3 x img_size x img_size: RGB (grey, palette and alpha converted), centre crop, resize."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a huge image is skipped, not decoded
        with Image.open(path) as image:
            image.draft("RGB", (img_size, img_size))  # JPEG: decode at a reduced scale, much faster for photos
            image = ImageOps.exif_transpose(image).convert("RGB")
            image = ImageOps.fit(image, (img_size, img_size), Image.Resampling.LANCZOS)
            return np.asarray(image).transpose(2, 0, 1)


def write_cache(path: Path, array: np.ndarray) -> None:
    """Write atomically; a read-only data folder only costs the decoding again next time."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        with open(temporary, "wb") as file:
            np.save(file, array)
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        log.warning(f"could not cache the decoded images in {path.parent} ({error}); they are decoded again next run")
