"""The MLP GAN of Goodfellow et al. 2014, as the well-known reference implementations build it."""

from __future__ import annotations

import torch
from torch import nn

from .layers import MinibatchStd, class_input, conditioning, projected_logits, projection_embedding


class MLPGenerator(nn.Module):
    """z (+ class embedding) -> 128 -> 256 -> 512 -> 1024 -> C*H*W, as the well-known reference implementations
    build it."""

    def __init__(
        self, *, latent_dim: int = 100, channels: int = 1, img_size: int = 28, num_classes: int = 0, clusters: int = 0
    ) -> None:
        super().__init__()
        self.image_shape = (channels, img_size, img_size)
        self.num_classes = num_classes  # the classes one can ask for; clusters are chosen by z
        self.clusters, self.embed, extra_inputs = conditioning(num_classes, clusters)  # the embedding joins z

        def block(n_in: int, n_out: int, batch_norm: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out, 0.8))  # eps=0.8 as in the reference code
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.net = nn.Sequential(
            *block(latent_dim + extra_inputs, 128, batch_norm=False),
            *block(128, 256),
            *block(256, 512),
            *block(512, 1024),
            nn.Linear(1024, channels * img_size * img_size),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        images = self.net(class_input(z, self.embed, labels, self.clusters))
        return images.view(z.shape[0], *self.image_shape)  # (B, C, H, W), [-1, 1]


class MLPDiscriminator(nn.Module):
    """C*H*W -> 512 -> 256 (+1: minibatch spread) -> 1 logit (no Sigmoid: the loss works on logits), plus the class
    projection for a conditional model."""

    def __init__(
        self, *, channels: int = 1, img_size: int = 28, minibatch_std: bool = False, num_classes: int = 0
    ) -> None:
        super().__init__()
        self.embed = projection_embedding(num_classes, 256 + minibatch_std)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * img_size * img_size, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            *([MinibatchStd()] if minibatch_std else []),
            nn.Linear(256 + minibatch_std, 1),
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return projected_logits(self.net, self.embed, images, labels)  # (B,) logits
