"""The evaluator: a small CNN classifier per dataset whose features and logits the quality metrics use.

FID's Inception network needs weights from the internet and sees digits poorly; a classifier
trained on the dataset itself is the feature space the MNIST GAN literature uses instead.
"""

from __future__ import annotations

import logging
import math
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import formats
from .config import MIN_EVAL_SAMPLES
from .data import load_dataset, to_unit_range
from .data.cache import CACHE_DIR, cache_dir
from .datasets import DATASETS
from .errors import DataError, NoEvaluator

log = logging.getLogger(__name__)
FEATURES = 128
MIN_STEPS = 2000  # --epochs 0: a small folder's updates (the emoji: 31 epochs 86.5%, 77 88.6%; RESULTS.md 16)
MAX_AUTO_EPOCHS = 100


class Evaluator(nn.Module):
    """Images in [-1, 1] (B x C x size x size; others are resized) -> 128 penultimate features -> class logits."""

    num_features = FEATURES  # read by torchmetrics

    def __init__(self, channels: int = 1, num_classes: int = 10, size: int = 28, blocks: int = 2) -> None:
        super().__init__()
        self.shape = {"channels": channels, "num_classes": num_classes, "size": size, "blocks": blocks}  # saved
        layers, width = [], channels
        for block in range(blocks):  # each: 3x3 conv, BN, ReLU, then half the side (28 -> 14 -> 7; 32 -> ... -> 4)
            out = 32 * 2**block
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            width = out
        self.body = nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(width * (size // 2**blocks) ** 2, FEATURES),
            nn.ReLU(inplace=True),  # the feature layer FID and the k-NN metrics use
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURES, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.shape["size"]
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        features = self.body(images)
        return features, self.head(self.dropout(features))

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) for images in [-1, 1] or uint8, computed in eval mode in batches."""
        self.eval()
        device = next(self.parameters()).device
        outputs = [
            self(as_unit_range(images[start : start + batch_size]).to(device))
            for start in range(0, len(images), batch_size)
        ]
        return (
            torch.cat([features for features, _ in outputs]).cpu(),
            torch.cat([logits for _, logits in outputs]).cpu(),
        )


def as_unit_range(images: torch.Tensor) -> torch.Tensor:
    return to_unit_range(images) if images.dtype == torch.uint8 else images.float()


def packaged_weights(dataset: str) -> Path:
    return Path(str(resources.files("mnist_gan") / "weights" / f"evaluator_{dataset}.pt"))


def evaluator_path(dataset: str, data_dir: str | Path) -> Path:
    """Where a dataset's evaluator is: in the package for MNIST and Fashion-MNIST, else in the data's cache (see
    data/cache.py), or beside the data where an earlier one was made before the folder became read-only."""
    if DATASETS[dataset].shipped_evaluator:
        return packaged_weights(dataset)
    name = f"evaluator_{dataset}.pt"
    path, beside = cache_dir(data_dir) / name, Path(data_dir) / CACHE_DIR / name
    return beside if not path.is_file() and beside.is_file() else path


def check_fits(evaluator: Evaluator, metadata: dict[str, Any], path: Path, data: dict[str, Any]) -> None:
    """Refuse an evaluator made for other data: other channels, another number of classes, or (a folder's)
    other class names. data: the channels, classes and class names (or None) of the data to score."""
    made_for = {"channels": evaluator.shape["channels"], "classes": evaluator.shape["num_classes"],
                "names": metadata.get("classes")}  # fmt: skip
    differs = [key for key in ("channels", "classes", "names") if None not in (made_for[key], data[key])
               and made_for[key] != data[key]]  # fmt: skip
    if differs:
        described = lambda side: (f"{side['channels']} channel(s), {side['classes']} classes"  # noqa: E731
                                  + (f" ({', '.join(side['names'])})" if side["names"] else ""))  # fmt: skip
        raise NoEvaluator(
            f"the evaluator {path} does not fit the data: it was made for {described(made_for)}, the data has "
            f"{described(data)}; make a new one with `python -m mnist_gan train-evaluator --dataset "
            f"{data['dataset']} --data-dir {data['data_dir']}`"
        )


def evaluator_size(dataset: str) -> int:
    """28 px for 28 px data, else 32 (CIFAR's size: larger images are scored at 32 px, where a small CNN still
    tells classes apart). The evaluator trains on the data resized to it, as a 32 px generator's images are."""
    return 28 if DATASETS[dataset].size == 28 else 32


def evaluator_shape(images: torch.Tensor, labels: torch.Tensor, blocks: int = 0) -> dict[str, int]:
    """The classifier a dataset's images (at evaluator_size) need: their channels, classes and size, and a third
    block at 32 px, where colour images need it to tell their classes apart (the emoji: 85% -> 88%, RESULTS.md 16).
    blocks: that many instead, when given."""
    size = images.shape[-1]
    return {
        "channels": images.shape[1],
        "num_classes": int(labels.max()) + 1,
        "size": size,
        "blocks": blocks or (3 if size >= 32 else 2),
    }


def load_evaluator(
    dataset: str, path: Path, device: torch.device | str = "cpu", data_dir: str | Path | None = None
) -> tuple[Evaluator, dict[str, Any]]:
    """An evaluator in eval mode, and its file's metadata (accuracy, real-data reference). data_dir: the data it
    is for, named in the advice when there is none (a user cache's path says nothing of the data's)."""
    if not path.is_file():
        folder = data_dir if data_dir is not None else path.parent.parent
        data_dir = "" if DATASETS[dataset].shipped_evaluator else f" --data-dir {folder}"
        raise NoEvaluator(
            f"no evaluator for {dataset} at {path}; create it with "
            f"`python -m mnist_gan train-evaluator --dataset {dataset}{data_dir}`"
        )
    payload = formats.load(path, (formats.EVALUATOR,))
    shape, weights, metadata = formats.evaluator_parts(payload, path)
    evaluator = formats.load_weights(Evaluator(**shape), weights, path, "the evaluator")
    return evaluator.to(device).eval(), metadata


def train_evaluator(
    dataset: str,
    data_dir: str | Path,
    *,
    epochs: int = 0,
    batch_size: int = 128,
    seed: int = 0,
    background: str = "white",
    blocks: int = 0,
    mirror: bool = False,
) -> tuple[Evaluator, float]:
    """Train the classifier with light shift augmentation (for colour: blur, and non-images to tell apart); returns
    it and its test-set accuracy. epochs 0: at least 4, and at least MIN_STEPS updates up to MAX_AUTO_EPOCHS (a
    folder of 3,400 images: 77 epochs). blocks: 0 for evaluator_shape's; mirror: also random_mirror."""
    torch.manual_seed(seed)
    load = {"background": background, "img_size": evaluator_size(dataset)}
    images, labels = load_dataset(dataset, data_dir, train=True, **load)
    test_images, test_labels = load_dataset(dataset, data_dir, train=False, **load)
    check_classifiable(dataset, data_dir, labels)
    evaluator = Evaluator(**evaluator_shape(images, labels, blocks))
    # Colour images also learn a class of non-images (not_images) through a training-only output, dropped after.
    nothing = nn.Linear(FEATURES, 1) if images.shape[1] == 3 else None
    parameters = [*evaluator.parameters(), *(nothing.parameters() if nothing is not None else [])]
    optimizer = torch.optim.AdamW(parameters, lr=2e-3, weight_decay=1e-4)
    batch_size = min(batch_size, len(images))  # a small folder: one batch of all its images
    epochs = epochs or min(MAX_AUTO_EPOCHS, max(4, math.ceil(MIN_STEPS / (len(images) // batch_size))))
    steps = epochs * (len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    started = time.perf_counter()
    for epoch in range(epochs):
        evaluator.train()
        order = torch.randperm(len(images))
        for index in range(len(images) // batch_size):
            batch = order[index * batch_size : (index + 1) * batch_size]
            inputs, targets = random_shift(to_unit_range(images[batch])), labels[batch]
            if mirror:
                inputs = random_mirror(inputs)
            if nothing is not None:
                inputs, targets = with_non_images(random_blur(inputs), targets, evaluator.shape["num_classes"])
            features, logits = evaluator(inputs)
            if nothing is not None:
                logits = torch.cat([logits, nothing(evaluator.dropout(features))], 1)
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        accuracy = test_accuracy(evaluator, test_images, test_labels)
        log.info(
            f"evaluator epoch {epoch + 1}/{epochs}: test accuracy {accuracy:.4f} ({time.perf_counter() - started:.0f} s)"
        )
    return evaluator.eval(), accuracy


def check_classifiable(dataset: str, data_dir: str | Path, labels: torch.Tensor) -> None:
    """An evaluator is a classifier: it needs two classes or more, and enough images for the real-data reference
    measured on them."""
    if int(labels.max()) < 1:
        raise DataError(
            f"{dataset} in {data_dir} has one class: the evaluator is a classifier and needs labelled images "
            f"(for a folder: one sub-folder per class)"
        )
    if len(labels) < MIN_EVAL_SAMPLES:  # its real-data reference is measured on training images
        raise DataError(
            f"{dataset} in {data_dir} has {len(labels)} training images; the evaluator needs at least "
            f"{MIN_EVAL_SAMPLES} (the metrics mean nothing on fewer)"
        )


def random_shift(images: torch.Tensor) -> torch.Tensor:
    """Shift each batch by up to 1/16 of its side in x and y, the border repeated (black digits, white icons alike):
    cheap augmentation against overfitting."""
    pixels = max(2, images.shape[-1] // 16)
    dx, dy = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,)))
    padded = F.pad(images, (pixels, pixels, pixels, pixels), mode="replicate")
    size = images.shape[-1]
    return padded[..., pixels + dy : pixels + dy + size, pixels + dx : pixels + dx + size]


def test_accuracy(evaluator: Evaluator, images: torch.Tensor, labels: torch.Tensor) -> float:
    _, logits = evaluator.embed(images)
    return (logits.argmax(1) == labels).float().mean().item()


def save_evaluator(evaluator: Evaluator, path: Path, **metadata: Any) -> None:
    formats.save(formats.EVALUATOR, formats.evaluator_fields(evaluator, **metadata), path)


def with_non_images(images: torch.Tensor, labels: torch.Tensor, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch and a quarter as many non-images (not_images), labelled `label`."""
    extra = not_images(len(images) // 4, images.shape[1:])
    return torch.cat([images, extra]), torch.cat([labels, torch.full((len(extra),), label)])


def not_images(count: int, shape: torch.Size) -> torch.Tensor:
    """count images of nothing in [-1, 1]: half uniform noise, half smooth random colour fields (noise 2 to 8 px
    wide, scaled up). A classifier of the data alone maps them among the data's features, where the k-NN metrics
    count them as real (uniform noise: precision 1.00 on the emoji; 0.02 with them, RESULTS.md section 17)."""
    channels, size, _ = shape
    noise = torch.rand(count, channels, size, size) * 2 - 1
    side = int(torch.randint(2, 9, ()))
    fields = F.interpolate(torch.rand(count, channels, side, side) * 2 - 1, size=(size, size), mode="bilinear")
    return torch.where(torch.rand(count, 1, 1, 1) < 0.5, noise, fields)


def random_mirror(images: torch.Tensor) -> torch.Tensor:
    """Half the batch mirrored left to right: for data whose classes a mirror keeps (garments, photos), not digits."""
    return torch.where(torch.rand(len(images), 1, 1, 1) < 0.5, images.flip(-1), images)


def random_blur(images: torch.Tensor) -> torch.Tensor:
    """Half the batch downscaled 2 to 4 times and back up. Colour images only: their evaluator should judge what an
    image shows, not a detail lost at half size; without it the real emoji, blurred, scored as far from the data as
    a one-epoch generator's blobs (FID 762 against 964; with it 43; RESULTS.md, section 16)."""
    factor = int(torch.randint(2, 5, ()))
    small = F.interpolate(images, scale_factor=1 / factor, mode="bilinear", antialias=True)
    soft = F.interpolate(small, size=images.shape[-2:], mode="bilinear")
    return torch.where(torch.rand(len(images), 1, 1, 1) < 0.5, soft, images)
