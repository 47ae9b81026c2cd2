"""Differentiable augmentation (DiffAugment, Zhao et al. 2020): the same random colour, translation and cutout
applied to real and generated images before D sees them, in D's update and in G's. With a few thousand images D
otherwise memorises the training set and its gradients stop teaching G; augmenting only the real images would teach
G to draw the augmentations.

Written out as the paper's own code does (integer shifts, a zeroed square): torchvision's and kornia's transforms
warp with grid_sample, which costs more per step on a CPU and is not what the measurements used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diff_augment(images: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Each image gets its own random draw of every transform in `policy` (Config.augmentations, names it has
    checked); gradients flow through all of them."""
    for name in policy:
        images = TRANSFORMS[name](images)
    return images


def color(images: torch.Tensor) -> torch.Tensor:
    """Brightness (+-0.5), saturation (x0-2) and contrast (x0.5-1.5), per image, in the [-1, 1] range."""
    shape = (len(images), 1, 1, 1)
    images = images + (torch.rand(shape, dtype=images.dtype, device=images.device) - 0.5)
    if images.shape[1] > 1:  # saturation needs colour
        mean = images.mean(dim=1, keepdim=True)
        images = (images - mean) * (torch.rand(shape, dtype=images.dtype, device=images.device) * 2) + mean
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * (torch.rand(shape, dtype=images.dtype, device=images.device) + 0.5) + mean


def translation(images: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to 1/8 of its side in x and y, filling with zeros (mid-grey), by one gather."""
    batch, _, height, width = images.shape
    shift_y, shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-shift_y, shift_y + 1, (batch, 1, 1), device=images.device)
    dx = torch.randint(-shift_x, shift_x + 1, (batch, 1, 1), device=images.device)
    rows = (torch.arange(height, device=images.device).view(1, -1, 1) + dy + 1).clamp(0, height + 1)
    columns = (torch.arange(width, device=images.device).view(1, 1, -1) + dx + 1).clamp(0, width + 1)
    padded = F.pad(images, (1, 1, 1, 1))  # a zero border that every out-of-range index lands on
    index = torch.arange(batch, device=images.device).view(-1, 1, 1)
    return padded.permute(0, 2, 3, 1)[index, rows, columns].permute(0, 3, 1, 2)


def cutout(images: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of half the image's side per image, at a random place (partly outside is allowed)."""
    batch, _, height, width = images.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height + (1 - size_y % 2), (batch, 1, 1), device=images.device) - size_y // 2
    left = torch.randint(0, width + (1 - size_x % 2), (batch, 1, 1), device=images.device) - size_x // 2
    rows = torch.arange(height, device=images.device).view(1, -1, 1)
    columns = torch.arange(width, device=images.device).view(1, 1, -1)
    inside = (rows >= top) & (rows < top + size_y) & (columns >= left) & (columns < left + size_x)
    return images * (~inside).unsqueeze(1).to(images.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}
