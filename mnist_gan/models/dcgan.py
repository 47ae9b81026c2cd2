"""A small DCGAN (Radford et al. 2015) for 28 x 28 and 32 x 32 images."""

from __future__ import annotations

import torch
from torch import nn

from .layers import MinibatchStd


class DCGANGenerator(nn.Module):
    """z -> 4w x s x s -> 2w x 2s x 2s -> C x 4s x 4s, with s = img_size / 4 (7 for 28, 8 for 32)."""

    def __init__(self, *, latent_dim: int = 100, channels: int = 1, img_size: int = 28, width: int = 32) -> None:
        super().__init__()
        self.start = img_size // 4
        self.project = nn.Sequential(  # z: B x latent_dim
            nn.Linear(latent_dim, 4 * width * self.start**2, bias=False),
            nn.BatchNorm1d(4 * width * self.start**2),
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.Sequential(  # state: 4w x 7 x 7
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),  # state: 2w x 14 x 14
            nn.ConvTranspose2d(2 * width, channels, 4, 2, 1),
            nn.Tanh(),  # state: C x 28 x 28
        )
        self.width = width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], 4 * self.width, self.start, self.start)
        return self.upsample(x)


class DCGANDiscriminator(nn.Module):
    """C x 4s x 4s -> w x 2s x 2s -> 2w x s x s -> 1 logit; no BatchNorm on the input layer, as in the paper."""

    def __init__(self, *, channels: int = 1, img_size: int = 28, width: int = 32, minibatch_std: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(  # input: C x 28 x 28
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),  # state: w x 14 x 14
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),  # state: 2w x 7 x 7
            *([MinibatchStd()] if minibatch_std else []),  # state: (2w + 1) x 7 x 7
            nn.Flatten(),
            nn.Linear((2 * width + minibatch_std) * (img_size // 4) ** 2, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(1)  # (B,) logits
