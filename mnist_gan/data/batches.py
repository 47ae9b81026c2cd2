"""The dataset as one uint8 tensor, batched by indexing: no per-image Python work in the training loop."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..errors import DataError

RESIZE_CHUNK = 2048  # images resized at a time: memory stays at a few MB of floats, whatever the size


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
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    start: int = 0,
    max_batches: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield the epoch's shuffled batches, (images in [-1, 1], their labels), from batch `start` on. Under
    torchrun each step takes world_size x batch_size images of the order and rank r trains on the r-th
    batch_size of them.

    The order depends only on (seed, epoch), so a resumed run sees exactly the batches an
    uninterrupted one would.
    """
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    if images.is_cuda:  # from pinned memory, without making the host wait for the GPU (once an epoch)
        order = order.pin_memory().to(images.device, non_blocking=True)
    else:
        order = order.to(images.device)  # CPU: a no-op; MPS: beside its data
    step_size = batch_size * world_size
    for index in range(start, batches_per_epoch(len(images), step_size, max_batches)):
        batch = order[index * step_size + rank * batch_size :][:batch_size]
        yield to_unit_range(images[batch]), labels[batch]


def fixed_subset(images: torch.Tensor, num_images: int = 10_000) -> torch.Tensor:
    """A fixed random subset (seed 0): the real training images the reference metrics are measured on."""
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:num_images]]
