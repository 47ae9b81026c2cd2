"""One GAN step: the losses, R1, and the learning-rate schedule; the epoch loop (epochs.py) calls it, and so do the
benchmarks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .augment import diff_augment
from .config import Config
from .devices import autocast
from .state import TrainingState


def train_step(
    state: TrainingState,
    real: torch.Tensor,
    latent_dim: int,
    precision: torch.dtype,
    loss: str = "ns",
    r1: float = 0.0,
    labels: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    augment: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """One discriminator and one generator update, on logits: the non-saturating loss or the hinge loss,
    optionally with the R1 penalty (weight r1) on D's gradient at the real images. The statistics stay on the
    device (0-dim tensors): reading them every step would make a GPU wait for the host. loss_d is the adversarial
    loss alone, comparable between steps with and without the penalty.

    A conditional model gets the real batch's labels (None otherwise); the fakes are drawn for the same labels, so
    G is asked for the classes in the proportions of the data. noise: G's input, fresh from the RNG by default.
    augment: DiffAugment's transforms, applied to everything D sees (R1 then differentiates through them)."""
    generator, discriminator = state.parallel or (state.generator, state.discriminator)
    z = torch.randn(real.shape[0], latent_dim, device=real.device) if noise is None else noise

    # (1) Update D: tell real from fake. Real and fake go through D separately so that BatchNorm never
    # mixes their statistics.
    real.requires_grad_(r1 > 0)
    with autocast(real.device, precision):
        fake = generator(z, labels)
        logits_real = discriminator(diff_augment(real, augment), labels).float()
        logits_fake = discriminator(diff_augment(fake.detach(), augment), labels).float()
    loss_d = discriminator_loss(logits_real, logits_fake, loss)
    penalty = r1 / 2 * r1_penalty(logits_real, real) if r1 else 0.0
    state.optimizer_d.zero_grad(set_to_none=True)
    (loss_d + penalty).backward()
    state.optimizer_d.step()

    # (2) Update G: make D call its images real. D's weights are frozen: only the gradient w.r.t. its input is needed.
    # The plain D (not its DDP wrapper, which would wait for weight gradients to average): it is not updated here.
    discriminator = state.discriminator
    discriminator.requires_grad_(False)
    with autocast(real.device, precision):
        logits_fake_for_g = discriminator(diff_augment(fake, augment), labels).float()
    loss_g = generator_loss(logits_fake_for_g, loss)
    state.optimizer_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.optimizer_g.step()
    discriminator.requires_grad_(True)

    if state.ema is not None:
        state.ema.update_parameters(state.generator)
    return {
        "loss_d": loss_d.detach(),
        "loss_g": loss_g.detach(),
        "d_real": torch.sigmoid(logits_real.detach()).mean(),  # D(x)
        "d_fake": torch.sigmoid(logits_fake.detach()).mean(),  # D(G(z)) before D's update
    }


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "hinge":
        return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    # non-saturating: maximise log D(x) + log(1 - D(G(z)))
    return F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real)) + (
        F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    )


def r1_penalty(logits_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """|grad_x D(x)|^2 at the real images, averaged over the batch; differentiable, so D can learn to keep it small."""
    (gradient,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
    return gradient.pow(2).flatten(1).sum(1).mean()


def r1_weight(config: Config, step: int) -> float:
    """Lazy regularisation (StyleGAN2): the penalty on one step in r1_every, weighted r1_every times as much, costs
    a fraction of its price for the same effect on average."""
    return config.r1 * config.r1_every if config.r1 and step % config.r1_every == 0 else 0.0


def generator_loss(logits_fake: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "hinge":
        return -logits_fake.mean()
    return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))  # maximise log D(G(z))


def set_learning_rates(state: TrainingState, config: Config, total_steps: int) -> None:
    """--lr-schedule linear: both rates fall linearly from their start to 0 at the end of the run, which is its
    last step or, with --time-budget, the end of the budget if that comes first."""
    progress = 0.0
    if config.lr_schedule == "linear":
        progress = state.step / total_steps
        if config.time_budget:
            progress = max(progress, state.elapsed / (config.time_budget * 60))
    for optimizer, lr in ((state.optimizer_g, config.lr), (state.optimizer_d, config.lr_discriminator)):
        for group in optimizer.param_groups:
            group["lr"] = lr * max(0.0, 1.0 - progress)


def training_step(
    state: TrainingState, config: Config, precision: torch.dtype, real: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One step as training takes it (the epoch loop, the benchmarks): the config's loss, its lazy R1, the labels
    when the model is conditional (the data's classes, or the clusters it is trained on); counted in state.step."""
    conditional_labels = labels if config.conditional or config.cluster_count else None
    stats = train_step(state, real, config.latent_dim, precision, config.loss, r1_weight(config, state.step),
                       conditional_labels, augment=config.augmentations)  # fmt: skip
    state.step += 1
    return stats
