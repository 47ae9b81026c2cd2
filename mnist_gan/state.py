"""The training state: networks, EMA, optimizers, fixed noise and position; to and from a checkpoint dict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .config import Config
from .models import build_models

FIXED_NOISE_SIZE = 64  # an 8 x 8 grid from the same z every epoch, so progress is comparable
BATCHNORM_IMAGES = 4096  # generated to measure the weight average's BatchNorm statistics (2,048: FID +- 0.2)
BATCHNORM_SEED = 1  # their noise: a private generator, so training draws the same random numbers with or without it


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


class WeightAverage(AveragedModel):
    """torch's AveragedModel (its module and its checkpoint keys) with an EMA whose decay grows with the updates n
    as (1 + n) / (1 + 1/span + n), up to `decay`: the average reaches back over about span * n updates, so neither
    the random init nor long-gone generators dominate it.

    The update never waits for a GPU: the count stays on the CPU and the weight is a Python number, where torch's
    update_parameters copies its count to the device and tests it (a blocking copy every step)."""

    def __init__(self, model: nn.Module, decay: float, span: float) -> None:
        super().__init__(model, use_buffers=True)
        self.decay, self.span = decay, span

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        updates = int(self.n_averaged)  # a CPU tensor: no device sync
        weight = ema_weight(self.decay, self.span, updates)
        averaged = chain(self.module.parameters(), self.module.buffers())
        for average, value in zip(averaged, chain(model.parameters(), model.buffers()), strict=True):
            if updates == 0 or not average.is_floating_point():  # the first update copies, as AveragedModel's does;
                average.copy_(value)  # BatchNorm's num_batches_tracked is a count, not a weight
            else:
                average.lerp_(value, weight)
        self.n_averaged += 1


@torch.no_grad()
def measure_batchnorm(
    generator: nn.Module,
    latent_dim: int,
    batch_size: int,
    labels: torch.Tensor | None = None,
    images: int = BATCHNORM_IMAGES,
    seed: int = BATCHNORM_SEED,
) -> None:
    """A generator's BatchNorm running statistics measured on its own weights, in training mode, as torch's
    swa_utils.update_bn does for SWA. Training measures the weight average's: the average of the generator's
    statistics is not the statistics of the average, and the gap grows with the span (Fashion-MNIST: FID 11.2
    with the one, 9.4 to 10.0 with the other; benchmarks/RESULTS.md section 21). labels: the training set's, whose
    class shares the conditional generator is drawn in, as in training; None for an unconditional one. images,
    seed: how many are drawn, from which noise."""
    norms = [module for module in generator.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain mean over the batches below
    device, rng = next(generator.parameters()).device, torch.Generator().manual_seed(seed)
    was_training = generator.training
    generator.train()
    for _ in range(max(1, images // batch_size) if norms else 0):
        inputs = [torch.randn(batch_size, latent_dim, generator=rng).to(device)]
        if labels is not None:
            inputs.append(labels[torch.randint(len(labels), (batch_size,), generator=rng).to(labels.device)])
        generator(*inputs)
    generator.train(was_training)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum


def ema_weight(decay: float, span: float, updates_so_far: int) -> float:
    """The new generator's weight in the average after n updates: 1 - min(decay, (1 + n) / (1 + 1/span + n));
    span 1/9 gives (1 + n) / (10 + n), TensorFlow's ExponentialMovingAverage warm-up."""
    ramp = 1.0 + 1.0 / span
    return 1.0 - min(decay, (1.0 + updates_so_far) / (ramp + updates_so_far))


def new_state(config: Config, device: torch.device) -> TrainingState:
    torch.manual_seed(config.seed)
    generator, discriminator = (model.to(device) for model in build_models(config))
    ema = None
    if config.ema_decay > 0:
        ema = WeightAverage(generator, config.ema_decay, config.ema_span)
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
