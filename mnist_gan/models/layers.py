"""Layers shared by the model families."""

from __future__ import annotations

import math

import torch
from torch import nn


class MinibatchStd(nn.Module):
    """Appends one feature: the spread of D's features across each group of `group` images (Karras et al. 2018,
    ProGAN). A generator that draws the same digit again and again gives batches with a small spread, which D
    can then see; the penalty for that pushes G towards variety (higher recall)."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, rest = features.shape[0], features.shape[1:]
        group = math.gcd(self.group, batch)  # any batch size works; 1 gives a constant 0
        grouped = features.reshape(group, batch // group, *rest)
        spread = grouped.var(0, correction=0).add(1e-8).sqrt().flatten(1).mean(1)  # (batch // group,)
        spread = spread.repeat(group)  # image i is in group i % (batch // group)
        return torch.cat([features, spread.view(batch, *[1] * len(rest)).expand(batch, 1, *rest[1:])], 1)
