"""Generator and discriminator networks, one module per family (mlp, dcgan); build_models picks by config.arch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .dcgan import DCGANDiscriminator, DCGANGenerator
from .mlp import MLPDiscriminator, MLPGenerator

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLPDiscriminator", "MLPGenerator", "build_models", "eval_mode"]


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
    if config.conditional and not config.num_classes:
        raise ValueError("a conditional config needs num_classes (trainer.train counts them in the data)")
    classes, clusters = config.num_classes if config.conditional else 0, config.cluster_count
    shape = dict(channels=config.channels, img_size=config.img_size)
    to_draw = dict(latent_dim=config.latent_dim, num_classes=classes, clusters=clusters)
    to_judge = dict(minibatch_std=config.minibatch_std, num_classes=classes + clusters)  # D is told the cluster too
    if config.arch == "dcgan":
        size = dict(width=config.width, depth=config.depth)
        generator = DCGANGenerator(**to_draw, **size, **shape)
        discriminator = DCGANDiscriminator(**to_judge, **size, **shape)
        generator.apply(init_weights)
        discriminator.apply(init_weights)
    else:
        generator = MLPGenerator(**to_draw, **shape)
        discriminator = MLPDiscriminator(**to_judge, **shape)
    if config.spectral_norm:
        for layer in [module for module in discriminator.modules() if isinstance(module, (nn.Linear, nn.Conv2d))]:
            spectral_norm(layer)  # weight / its largest singular value, by one power iteration per step
    return generator, discriminator


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Sample in eval mode (BatchNorm uses its running statistics), then restore the model's mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
