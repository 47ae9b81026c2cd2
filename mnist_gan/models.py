"""Generator and discriminator networks: the MLP GAN of Goodfellow et al. and a small DCGAN."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .config import Config


# ---------------------------------------------------------------- MLP (Goodfellow et al. 2014)
class MLPGenerator(nn.Module):
    """z -> 128 -> 256 -> 512 -> 1024 -> C*H*W, as the well-known reference implementations build it."""

    def __init__(self, *, latent_dim: int = 100, channels: int = 1, img_size: int = 28) -> None:
        super().__init__()
        self.image_shape = (channels, img_size, img_size)

        def block(n_in: int, n_out: int, batch_norm: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out, 0.8))  # eps=0.8 as in the reference code
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.net = nn.Sequential(
            *block(latent_dim, 128, batch_norm=False),
            *block(128, 256),
            *block(256, 512),
            *block(512, 1024),
            nn.Linear(1024, channels * img_size * img_size),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)  # (B, C, H, W) in [-1, 1]


class MLPDiscriminator(nn.Module):
    """C*H*W -> 512 -> 256 -> 1 logit (no Sigmoid: the loss works on logits)."""

    def __init__(self, *, channels: int = 1, img_size: int = 28) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * img_size * img_size, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(256, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(1)  # (B,) logits


# ---------------------------------------------------------------- DCGAN (Radford et al. 2015)
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

    def __init__(self, *, channels: int = 1, img_size: int = 28, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(  # input: C x 28 x 28
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),  # state: w x 14 x 14
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),  # state: 2w x 7 x 7
            nn.Flatten(),
            nn.Linear(2 * width * (img_size // 4) ** 2, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(1)  # (B,) logits


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) for weights, N(1, 0.02) for BatchNorm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_models(config: Config) -> tuple[nn.Module, nn.Module]:
    """Return (generator, discriminator) for a run configuration."""
    shape = dict(channels=config.channels, img_size=config.img_size)
    if config.arch == "mlp":
        return MLPGenerator(latent_dim=config.latent_dim, **shape), MLPDiscriminator(**shape)
    if config.arch == "dcgan":
        generator = DCGANGenerator(latent_dim=config.latent_dim, width=config.width, **shape)
        discriminator = DCGANDiscriminator(width=config.width, **shape)
        generator.apply(init_weights)
        discriminator.apply(init_weights)
        return generator, discriminator
    raise ValueError(f"unknown architecture {config.arch!r}")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Sample in eval mode (BatchNorm uses its running statistics), then restore the model's mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
