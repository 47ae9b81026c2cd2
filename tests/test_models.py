"""Model shapes for both architectures and image sizes, and one real optimisation step."""

from __future__ import annotations

import pytest
import torch

from mnist_gan.config import Config
from mnist_gan.models import build_models
from mnist_gan.state import new_state
from mnist_gan.trainer import train_step


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("img_size", [28, 32])
def test_generator_and_discriminator_shapes(arch: str, dataset: str, img_size: int) -> None:
    config = Config(arch=arch, dataset=dataset, img_size=img_size, width=8, latent_dim=16)
    generator, discriminator = build_models(config)
    images = generator(torch.randn(5, 16))
    assert images.shape == (5, 1, img_size, img_size)
    assert images.min() >= -1 and images.max() <= 1  # Tanh range, the data's range
    assert discriminator(images).shape == (5,)  # one logit per image


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16])
def test_one_step_changes_both_models_and_losses_are_finite(arch: str, precision: torch.dtype) -> None:
    config = Config(arch=arch, width=8, batch_size=16)
    state = new_state(config, torch.device("cpu"))
    before_g = [p.detach().clone() for p in state.generator.parameters()]
    before_d = [p.detach().clone() for p in state.discriminator.parameters()]
    real = torch.rand(16, 1, 28, 28) * 2 - 1  # the step does not care what the data is
    stats = train_step(state, real, config.latent_dim, precision)
    assert set(stats) == {"loss_d", "loss_g", "d_real", "d_fake"}
    assert all(torch.isfinite(torch.tensor(value)) for value in stats.values())
    assert 0 < stats["d_real"] < 1 and 0 < stats["d_fake"] < 1
    assert all(not torch.equal(a, b) for a, b in zip(before_g, state.generator.parameters(), strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(before_d, state.discriminator.parameters(), strict=True))
    assert all(p.requires_grad for p in state.discriminator.parameters())  # unfrozen after the G step


def test_ema_follows_the_generator_but_lags() -> None:
    config = Config(arch="mlp", batch_size=16, ema_decay=0.99)
    state = new_state(config, torch.device("cpu"))

    def step() -> None:
        train_step(state, torch.rand(16, 1, 28, 28) * 2 - 1, config.latent_dim, torch.float32)

    step()  # the first update copies the generator (AveragedModel's start)
    start = state.ema.module.net[0].weight.detach().clone()
    for _ in range(3):
        step()
    ema_weight, raw_weight = state.ema.module.net[0].weight, state.generator.net[0].weight
    assert not torch.equal(ema_weight, start)  # it follows...
    assert (ema_weight - start).norm() < (raw_weight - start).norm()  # ...but lags behind the generator
    assert int(state.ema.n_averaged) == 4
