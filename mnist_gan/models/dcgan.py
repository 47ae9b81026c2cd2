"""A DCGAN (Radford et al. 2015) whose depth follows the image size: two stride-2 layers for 28 and 32 px (from
7 x 7 or 8 x 8), one more for each doubling beyond (64 px: three, 128: four, 256: five, each from 8 x 8). With
depth 2 (the default) each stride-2 layer but D's first and G's last is followed by a 3x3 convolution at the same
size, as in the "standard CNN" of the SN-GAN paper (Miyato et al. 2018): depth 1 is the paper's DCGAN."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from .layers import MinibatchStd, class_input, conditioning, projected_logits, projection_embedding


def stride_two_layers(img_size: int) -> int:
    """How many times the DCGAN halves (D) or doubles (G) the image: 2 up to 32 px, then one per doubling."""
    layers = 2
    while img_size // 2**layers > 8:
        layers += 1
    return layers


def same_size_convs(channels: int, depth: int, activation: Callable[[], nn.Module]) -> list[nn.Module]:
    """depth - 1 3x3 convolutions that keep the size and channels, each with BatchNorm and the activation: more
    layers where the DCGAN has one per size, for detail a colour image needs (the emoji at 32 px: FID 55 -> 34 in
    the same minutes, benchmarks/RESULTS.md section 19)."""
    layers: list[nn.Module] = []
    for _ in range(depth - 1):
        layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), activation()]
    return layers


def supports_img_size(img_size: int) -> bool:
    """Up to 32 px any multiple of 4; beyond, 8 x 8 doubled a whole number of times (64, 128, 256)."""
    layers = stride_two_layers(img_size)
    return img_size % 4 == 0 and (layers == 2 or img_size == 8 * 2**layers)


class DCGANGenerator(nn.Module):
    """z -> 2^n w x s x s -> ... -> 2w x img/2 x img/2 -> C x img x img, with n stride-two layers, s = img / 2^n."""

    def __init__(
        self,
        *,
        latent_dim: int = 100,
        channels: int = 1,
        img_size: int = 28,
        width: int = 32,
        depth: int = 1,
        num_classes: int = 0,
        clusters: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes  # the classes one can ask for; clusters are chosen by z
        self.clusters, self.embed, extra_inputs = conditioning(num_classes, clusters)  # the embedding joins z
        layers = stride_two_layers(img_size)
        self.start, self.start_channels = img_size // 2**layers, width * 2**layers
        self.project = nn.Sequential(  # z: B x latent_dim
            nn.Linear(latent_dim + extra_inputs, self.start_channels * self.start**2, bias=False),
            nn.BatchNorm1d(self.start_channels * self.start**2),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        for level in range(layers, 1, -1):  # 2^n w -> ... -> 2w channels, doubling the size each time
            blocks += [
                nn.ConvTranspose2d(width * 2**level, width * 2 ** (level - 1), 4, 2, 1, bias=False),
                nn.BatchNorm2d(width * 2 ** (level - 1)),
                nn.ReLU(inplace=True),
                *same_size_convs(width * 2 ** (level - 1), depth, partial(nn.ReLU, inplace=True)),
            ]
        self.upsample = nn.Sequential(*blocks, nn.ConvTranspose2d(2 * width, channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.project(class_input(z, self.embed, labels, self.clusters)).view(
            z.shape[0], self.start_channels, self.start, self.start
        )
        return self.upsample(x)


class DCGANDiscriminator(nn.Module):
    """C x img x img -> w x img/2 x img/2 -> ... -> 2^(n-1) w x s x s -> 1 logit; no BatchNorm on the input layer,
    as in the paper."""

    def __init__(
        self,
        *,
        channels: int = 1,
        img_size: int = 28,
        width: int = 32,
        depth: int = 1,
        minibatch_std: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        layers = stride_two_layers(img_size)
        blocks: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for level in range(1, layers):  # w -> 2w -> ... -> 2^(n-1) w channels, halving the size each time
            blocks += [
                nn.Conv2d(width * 2 ** (level - 1), width * 2**level, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width * 2**level),
                nn.LeakyReLU(0.2, inplace=True),
                *same_size_convs(width * 2**level, depth, partial(nn.LeakyReLU, 0.2, inplace=True)),
            ]
        features = width * 2 ** (layers - 1) + minibatch_std
        self.net = nn.Sequential(
            *blocks,
            *([MinibatchStd()] if minibatch_std else []),  # one more feature map: the spread over the group
            nn.Flatten(),
            nn.Linear(features * (img_size // 2**layers) ** 2, 1),
        )
        self.embed = projection_embedding(num_classes, features * (img_size // 2**layers) ** 2)  # conditional only

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return projected_logits(self.net, self.embed, images, labels)  # (B,) logits
