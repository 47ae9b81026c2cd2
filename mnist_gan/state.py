"""The training state: networks, EMA, optimizers, fixed noise and position; to and from a checkpoint dict."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .config import Config
from .models import build_models

FIXED_NOISE_SIZE = 64  # an 8 x 8 grid from the same z every epoch, so progress is comparable


@dataclass
class TrainingState:
    """Everything that changes while training; checkpoints store all of it."""

    generator: nn.Module
    discriminator: nn.Module
    ema: AveragedModel | None
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    fixed_noise: torch.Tensor
    epoch: int = 0  # the epoch being trained (0-based)
    batches_done: int = 0  # batches of `epoch` already trained
    step: int = 0  # generator updates so far
    best_fid: float = math.inf
    elapsed: float = 0.0  # wall seconds of training, summed over resumes
    data: str = ""  # fingerprint of the training set (data.fingerprint): a resume must see the same data
    world_size: int = 0  # processes that trained it (torchrun's ranks); 0: not recorded (an older checkpoint)
    # Under torchrun: G and D in their DistributedDataParallel wrappers, which the training step runs through
    # (checkpoints, samples and the EMA use the plain modules above, which share their weights).
    parallel: tuple[nn.Module, nn.Module] | None = None

    @property
    def sample_generator(self) -> nn.Module:
        """The generator used for samples, evaluation and export: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.generator


def ema_update(decay: float, span: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """EMA whose decay grows with the updates n as (1 + n) / (1 + 1/span + n), up to `decay`: the average reaches
    back over about span * n updates, so neither the random init nor long-gone generators dominate it."""
    ramp = 1.0 + 1.0 / span  # span 1/9: (1 + n) / (10 + n), TensorFlow's ExponentialMovingAverage warm-up

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        # computed on the device: float(num_averaged) would make a GPU wait for the host every step
        weight = 1.0 - ((1.0 + num_averaged) / (ramp + num_averaged)).clamp(max=decay)
        for average, value in zip(averaged, current, strict=True):
            if average.is_floating_point():
                average.lerp_(value, weight.to(average.dtype))
            else:  # BatchNorm's num_batches_tracked
                average.copy_(value)

    return update


def new_state(config: Config, device: torch.device) -> TrainingState:
    torch.manual_seed(config.seed)
    generator, discriminator = (model.to(device) for model in build_models(config))
    ema = None
    if config.ema_decay > 0:
        ema = AveragedModel(generator, multi_avg_fn=ema_update(config.ema_decay, config.ema_span), use_buffers=True)
    noise_rng = torch.Generator().manual_seed(config.seed)
    return TrainingState(
        generator=generator,
        discriminator=discriminator,
        ema=ema,
        optimizer_g=adam(generator, config.lr, config, device),
        optimizer_d=adam(discriminator, config.lr_discriminator, config, device),
        fixed_noise=torch.randn(FIXED_NOISE_SIZE, config.latent_dim, generator=noise_rng).to(device),
    )


def adam(model: torch.nn.Module, lr: float, config: Config, device: torch.device) -> torch.optim.Adam:
    """Adam as one fused kernel per step where torch has one (CPU, CUDA): faster than the per-tensor version
    (benchmarks/RESULTS.md, section 7)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(config.b1, config.b2), fused=fused or None)
