"""Any folder of images (png, jpg, webp, ...), searched recursively. Each image is decoded once with Pillow,
converted to RGB, centre-cropped to a square and resized; the result is cached as one uint8 array (see cache.py
for where), which later runs memory-map instead of decoding again.

First-level sub-folders, when every image sits in one and there are at least two, are classes (labels 0, 1, ...
in sorted order, as torchvision's ImageFolder); otherwise every image has label 0. Every 10th image (in sorted
order) is held out as the test split, which the quality metrics compare with; training uses the other nine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..datasets import IMAGE_SUFFIXES, classes_of, find_images, folder_classes
from ..errors import DataError, OutputError
from . import Check, Request, cache

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # bump when decoding or the cached files change, so old caches are not reused
TEST_EVERY = 10  # every 10th image is the test split
Colour = tuple[int, int, int]
WHITE: Colour = (255, 255, 255)  # behind transparent pixels by default: icons and sprites are drawn for light pages
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def load(request: Request) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 N x 3 x img_size x img_size, labels int64 N) of one split of the images under data_dir."""
    check, train = request.check, request.train
    split_check = None if check is None else lambda images, labels: check(*split(images, labels, train))
    return split(*load_all(request.data_dir, request.img_size, split_check, request.background), train)


def split(images: torch.Tensor, labels: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if len(images) < TEST_EVERY:
        raise DataError(f"the folder has {len(images)} readable images; a folder needs at least {TEST_EVERY}")
    test = torch.arange(len(images)) % TEST_EVERY == TEST_EVERY - 1
    chosen = ~test if train else test
    return images[chosen], labels[chosen]


def load_all(
    data_dir: str | Path, img_size: int, check: Check | None = None, background: Colour = WHITE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every readable image under data_dir, in sorted order, with its label."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"--data-dir {root}: no such folder (--dataset folder reads the images inside it)")
    paths = find_images(root)
    if not paths:
        raise DataError(f"no images in {root} (searched recursively for {', '.join(IMAGE_SUFFIXES)})")
    return prepare(root, "images", paths, folder_labels(root, paths), img_size, check, background)


def class_names(data_dir: str | Path) -> list[str]:
    """The folder's classes in label order (its first-level sub-folders), or [] when it has none."""
    return folder_classes(Path(data_dir))


def prepare(
    root: Path,
    name: str,
    paths: list[Path],
    labels: np.ndarray,
    img_size: int,
    check: Check | None = None,
    background: Colour = WHITE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images at paths (under root) decoded at img_size, transparency on `background`, with their labels, from
    the cache when it is up to date. `name` tells this set's cache from others of the same root (a dataset's
    splits)."""
    readable, unreadable = regular_files(paths)
    content = content_key(root, paths, readable, background)
    stem = f"{name}_{img_size}px_{content}"
    folder = cache.cache_dir(root)
    found = read_cache(folder, stem, len(paths), img_size)
    if found is None:
        with cache.locked(root):  # other processes decoding the same images wait, then read
            found = read_cache(folder, stem, len(paths), img_size)
            if found is None:
                found = decode_all(root, paths, readable, unreadable, img_size, background)
                if check is not None:
                    check(torch.from_numpy(found[0]), torch.from_numpy(labels[found[1]]))
                write_cache(folder, name, stem, content, *found)
    images, kept = found
    return torch.from_numpy(images), torch.from_numpy(labels[kept])


def regular_files(paths: list[Path]) -> tuple[dict[int, os.stat_result], dict[int, str]]:
    """The paths that are regular files (after links), with their stat, by index; the rest (a FIFO, which would
    block the reader forever, a folder, a dangling or looping link) with the reason, never opened."""
    readable, unreadable = {}, {}
    for number, path in enumerate(paths):
        try:
            status = path.stat()
        except OSError as error:
            unreadable[number] = f"{type(error).__name__}: {error.strerror or error}"
            continue
        if stat.S_ISREG(status.st_mode):
            readable[number] = status
        else:
            unreadable[number] = "not a regular file"
    return readable, unreadable


def folder_labels(root: Path, paths: list[Path]) -> np.ndarray:
    """Class index of each image from its first-level sub-folder, or all 0 when the folder has no classes."""
    classes = classes_of(root, paths)  # the paths already found: no second walk of the tree
    if not classes:
        return np.zeros(len(paths), dtype=np.int64)
    index = {name: number for number, name in enumerate(classes)}
    return np.array([index[path.relative_to(root).parts[0]] for path in paths], dtype=np.int64)


def content_key(root: Path, paths: list[Path], readable: dict[int, os.stat_result], background: Colour) -> str:
    """Changes when any image is added, removed, replaced or touched, or the decoding (or its background) changes.
    Names are hashed as the bytes the file system holds: a name that is not valid UTF-8 still counts."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} {len(paths)} {background}\n".encode())
    for number, path in enumerate(paths):
        status = readable.get(number)
        digest.update(os.fsencode(path.relative_to(root)))
        digest.update(b" -\n" if status is None else f" {status.st_size} {status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def read_cache(folder: Path, stem: str, count: int, img_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(images, indices of the decoded paths) from the cache, or None when it is missing or does not hold what we
    write: uint8 N x 3 x size x size images, and N increasing indices below the number of paths."""
    images = cache.load_array(folder / f"{stem}.images.npy", np.dtype(np.uint8), 4)
    kept = cache.load_array(folder / f"{stem}.kept.npy", np.dtype(np.int64), 1)
    if images is None or kept is None:
        return None
    fits = images.shape[1:] == (3, img_size, img_size) and len(kept) == len(images) > 0
    if not (fits and kept[0] >= 0 and kept[-1] < count and (np.diff(kept) > 0).all()):
        log.warning(f"ignoring a cache in {folder} that does not fit the images ({stem}); decoding them again")
        return None
    return images, np.asarray(kept)


def write_cache(folder: Path, name: str, stem: str, content: str, images: np.ndarray, kept: np.ndarray) -> None:
    """Write atomically (the images last: they mark a complete cache), then drop the caches of older contents. A
    cache that cannot be written only costs the decoding again next time."""
    try:
        cache.save_array(folder / f"{stem}.kept.npy", kept)
        cache.save_array(folder / f"{stem}.images.npy", images)
    except OutputError as error:
        log.warning(f"could not cache the decoded images: {error}; they are decoded again next run")
        return
    cache.remove_stale(folder, f"{name}_*px_*.npy", f"_{content}.")  # other sizes of these images stay


def decode_all(
    root: Path,
    paths: list[Path],
    readable: dict[int, os.stat_result],
    unreadable: dict[int, str],
    img_size: int,
    background: Colour,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every readable image; the others are skipped and counted in one warning, and Pillow's own warnings
    (odd palettes, EXIF) in another. Returns (images, kept indices)."""
    log.info(f"decoding {len(readable):,} images under {root} at {img_size} px (cached for next time)")
    images = np.empty((len(readable), 3, img_size, img_size), dtype=np.uint8)
    kept, skipped = [], [f"{paths[number]} ({reason})" for number, reason in unreadable.items()]
    with warnings.catch_warnings(record=True) as pillow_warnings:
        warnings.simplefilter("always")
        for number in readable:
            try:
                images[len(kept)] = decode(paths[number], img_size, background)
            except UNREADABLE as error:
                skipped.append(f"{paths[number]} ({type(error).__name__}: {error})")
                continue
            kept.append(number)
    if pillow_warnings:
        log.info(f"Pillow warned {len(pillow_warnings)} time(s) while decoding, e.g. {pillow_warnings[0].message}")
    if skipped:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        log.warning(f"skipped {len(skipped)} of {len(paths)} image files that could not be read: {shown}")
    if not kept:
        raise DataError(f"none of the {len(paths)} image files under {root} could be read")
    return images[: len(kept)], np.array(kept, dtype=np.int64)


def decode(path: Path, img_size: int, background: Colour = WHITE) -> np.ndarray:
    """One image as uint8 3 x img_size x img_size: RGB (grey, palette, CMYK, 16-bit or float pixels converted;
    transparency composited onto `background`), centre crop, resize. An animation gives its first frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a huge image is skipped, not decoded
        with Image.open(path) as image:
            image.draft("RGB", (img_size, img_size))  # JPEG: decode at a reduced scale, much faster for photos
            image = on_background(to_8_bit(ImageOps.exif_transpose(image)), background)
            image = ImageOps.fit(image, (img_size, img_size), Image.Resampling.LANCZOS)
            return np.asarray(image).transpose(2, 0, 1)


def on_background(image: Image.Image, background: Colour) -> Image.Image:
    """RGB, with any transparency (an alpha channel, or a palette's or a colour's transparency) composited onto a
    solid background: dropping the alpha would show whatever colour a file stores under transparent pixels."""
    transparent = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if not transparent:
        return image.convert("RGB")
    canvas = Image.new("RGBA", image.size, (*background, 255))
    return Image.alpha_composite(canvas, image.convert("RGBA")).convert("RGB")


def to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images scaled from 0..65535, float images from 0..1, to 8 bits: Pillow's own
    conversion clips them (a mid-grey 16-bit PNG would decode almost white)."""
    if image.mode.startswith("I"):  # I;16, I;16B, I (Pillow's mode for 16-bit PNGs and 32-bit TIFFs)
        scaled = np.asarray(image, dtype=np.float64) / 257
    elif image.mode == "F":
        scaled = np.nan_to_num(np.asarray(image, dtype=np.float64)) * 255
    else:
        return image
    return Image.fromarray(scaled.round().clip(0, 255).astype(np.uint8), "L")
