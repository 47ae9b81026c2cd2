"""Model shapes for both architectures and image sizes, and one real optimisation step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mnist_gan import checkpoints, formats
from mnist_gan.config import Config
from mnist_gan.data import load_dataset
from mnist_gan.models import build_models
from mnist_gan.models.layers import MinibatchStd
from mnist_gan.state import BATCHNORM_IMAGES, TrainingState, WeightAverage, ema_weight, measure_batchnorm, new_state
from mnist_gan.step import (
    discriminator_loss,
    generator_loss,
    r1_penalty,
    r1_weight,
    set_learning_rates,
    train_step,
)  # fmt: skip


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
    # 0-dim tensors left on the device, detached: the loop reads them once per --log-every steps
    assert all(value.ndim == 0 and not value.requires_grad and torch.isfinite(value) for value in stats.values())
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


@pytest.mark.parametrize(
    "decay, span, expected",  # the new value's weight, 1 - min(decay, (1 + n) / (1 + 1/span + n)), after n = 0, 2, 1000
    [(0.99, 1 / 9, (0.9, 0.75, 0.01)), (0.9999, 1 / 3, (0.75, 0.5, 3 / 1004))],
)
def test_ema_warms_up_reaches_back_over_its_span_then_keeps_its_decay(decay, span, expected) -> None:
    for updates_so_far, weight in zip((0, 2, 1000), expected, strict=True):
        assert ema_weight(decay, span, updates_so_far) == pytest.approx(weight)
    model = torch.nn.BatchNorm1d(3)
    average = WeightAverage(model, decay, span)
    average.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model.weight.fill_(7.0)
    model.num_batches_tracked.fill_(7)
    average.update_parameters(model)
    moved = 1 + 6 * ema_weight(decay, span, 1)  # from 1 (BatchNorm's init) towards 7 by the weight after n = 1
    assert torch.allclose(average.module.weight, torch.full((3,), moved))
    assert average.module.num_batches_tracked.item() == 7  # integer buffers (BatchNorm's count) are copied
    assert average.n_averaged.device.type == "cpu"  # the count never makes a GPU wait


def test_the_weight_average_measures_its_own_batchnorm_statistics() -> None:
    """The average's BatchNorm buffers are measured on the averaged weights, for the classes it is drawn for,
    without touching the random numbers training draws."""
    config = Config(arch="dcgan", width=8, batch_size=64, conditional=True, num_classes=10)
    state = new_state(config, torch.device("cpu"))
    average = state.ema.module
    with torch.no_grad():  # weights whose statistics are not the buffers' (BatchNorm's init: mean 0, variance 1)
        average.project[0].weight.mul_(50)
    norm = average.project[1]
    sevens = torch.full((100,), 7)
    inputs = []
    hook = norm.register_forward_hook(lambda module, args, output: inputs.append(args[0]))
    with torch.no_grad():
        average.eval()(torch.randn(4096, config.latent_dim), torch.full((4096,), 7))
    hook.remove()
    mean, variance = inputs[0].mean(0), inputs[0].var(0)
    assert (norm.running_var < variance / 10).all()  # far off before

    rng = torch.get_rng_state()
    measure_batchnorm(average, config.latent_dim, config.batch_size, sevens)
    assert torch.equal(torch.get_rng_state(), rng)  # a private generator: training's noise stays the same
    assert ((norm.running_mean - mean).abs() / variance.sqrt()).max() < 0.2
    assert torch.allclose(norm.running_var, variance, rtol=0.2)
    assert norm.momentum == 0.1 and norm.num_batches_tracked == BATCHNORM_IMAGES // config.batch_size
    measured = norm.running_mean.clone()
    measure_batchnorm(average, config.latent_dim, config.batch_size, sevens)
    assert torch.equal(norm.running_mean, measured)  # a function of the weights alone: a resumed run measures the same
    measure_batchnorm(average, config.latent_dim, config.batch_size, torch.full((100,), 3))
    assert not torch.equal(norm.running_mean, measured)  # for the classes asked for


def test_a_run_saves_the_statistics_measured_on_its_average(trained_run: Path) -> None:
    """Training measures the average's statistics before it saves: measuring them again reproduces them."""
    generator, config, _ = checkpoints.load_generator(checkpoints.latest_checkpoint(trained_run))
    labels = load_dataset(config.dataset, config.data_dir)[1] if config.conditional else None
    saved = {name: value.clone() for name, value in generator.state_dict().items() if "running" in name}
    assert saved
    measure_batchnorm(generator, config.latent_dim, config.batch_size, labels,
                      images=min(BATCHNORM_IMAGES, config.batch_size * config.max_batches))  # fmt: skip
    assert all(torch.equal(value, generator.state_dict()[name]) for name, value in saved.items())


def fresh_step(loss: str = "ns", r1: float = 0.0, **config_values) -> tuple[TrainingState, dict[str, float]]:
    """One step of a new DCGAN on a fixed batch: the same weights, noise and batch for every variant."""
    config = Config(arch="dcgan", width=8, batch_size=16, **config_values)
    state = new_state(config, torch.device("cpu"))
    real = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.manual_seed(1)
    stats = train_step(state, real, config.latent_dim, torch.float32, loss, r1)
    return state, {name: value.item() for name, value in stats.items()}


def test_hinge_and_non_saturating_losses_follow_their_formulas_and_reach_training() -> None:
    real, fake = torch.tensor([0.5, 3.0]), torch.tensor([-2.0, 0.25])
    # hinge: D pays only inside the margin, G maximises D's raw score
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx((0.5 + 0.0) / 2 + (0.0 + 1.25) / 2)
    assert generator_loss(fake, "hinge").item() == pytest.approx(-(-2.0 + 0.25) / 2)
    # non-saturating: -log sigmoid(real) - log(1 - sigmoid(fake)); G: -log sigmoid(fake)
    softplus = torch.nn.functional.softplus
    assert discriminator_loss(real, fake, "ns").item() == pytest.approx(
        (softplus(-real) + softplus(fake)).mean().item()
    )
    assert generator_loss(fake, "ns").item() == pytest.approx(softplus(-fake).mean().item())
    hinge_state, _ = fresh_step("hinge")
    ns_state, _ = fresh_step("ns")
    assert not torch.equal(hinge_state.generator.project[0].weight, ns_state.generator.project[0].weight)


def test_r1_penalty_is_the_squared_input_gradient_and_changes_only_how_d_learns() -> None:
    weight = torch.tensor([[3.0, -4.0]])  # D(x) = w . x: its input gradient is w everywhere, |w|^2 = 25
    real = torch.randn(8, 2, requires_grad=True)
    assert r1_penalty((real @ weight.T).squeeze(1), real).item() == pytest.approx(25.0)
    plain_state, plain = fresh_step()
    penalised_state, penalised = fresh_step(r1=10.0)
    for name in ("loss_d", "d_real", "d_fake"):  # the same D and batch before the update: the same adversarial loss
        assert penalised[name] == pytest.approx(plain[name])
    plain_d, penalised_d = plain_state.discriminator.state_dict(), penalised_state.discriminator.state_dict()
    assert any(not torch.equal(plain_d[name], penalised_d[name]) for name in plain_d)  # but D's update differs


def test_lazy_r1_applies_the_penalty_every_r1_every_steps_scaled_to_the_same_average() -> None:
    lazy = Config(r1=1.0, r1_every=4)
    assert [r1_weight(lazy, step) for step in range(8)] == [4.0, 0, 0, 0, 4.0, 0, 0, 0]
    assert [r1_weight(Config(r1=1.0, r1_every=1), step) for step in range(3)] == [1.0, 1.0, 1.0]
    assert r1_weight(Config(r1=0.0), 0) == 0.0


def test_spectral_norm_keeps_each_discriminator_layer_near_unit_norm() -> None:
    state, _ = fresh_step(spectral_norm=True)
    for _ in range(5):
        train_step(state, torch.rand(16, 1, 28, 28) * 2 - 1, 100, torch.float32)
    layers = [module for module in state.discriminator.modules() if isinstance(module, (nn.Linear, nn.Conv2d))]
    assert layers and all(hasattr(layer.parametrizations, "weight") for layer in layers)
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert 0.8 < sigma < 1.1, sigma  # the plain DCGAN init has sigma far from 1
    plain, _ = fresh_step()
    plain_sigma = [torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2) for m in plain.discriminator.modules()
                   if isinstance(m, (nn.Linear, nn.Conv2d))]  # fmt: skip
    assert any(abs(sigma - 1) > 0.2 for sigma in plain_sigma)


def test_two_time_scales_and_the_linear_schedule_set_each_optimizer() -> None:
    state = new_state(Config(lr=1e-3, lr_d=4e-3), torch.device("cpu"))
    assert state.optimizer_g.param_groups[0]["lr"] == 1e-3 and state.optimizer_d.param_groups[0]["lr"] == 4e-3
    state.step = 75
    set_learning_rates(state, Config(lr=1e-3, lr_d=4e-3, lr_schedule="linear"), total_steps=100)
    assert state.optimizer_g.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert state.optimizer_d.param_groups[0]["lr"] == pytest.approx(1e-3)
    state.elapsed = 45.0  # with a 1-minute budget the run ends sooner than its steps: decay over the budget
    set_learning_rates(state, Config(lr=1e-3, lr_schedule="linear", time_budget=1.0), total_steps=1000)
    assert state.optimizer_g.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    set_learning_rates(state, Config(lr=1e-3, lr_d=4e-3, lr_schedule="constant"), total_steps=100)  # the start values
    assert state.optimizer_g.param_groups[0]["lr"] == 1e-3


def test_minibatch_std_appends_the_mean_standard_deviation_of_each_group() -> None:
    features = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    out = MinibatchStd(group=4)(features)
    # image i is in group i % 2; the spread is the std over the group's 4 images, averaged over features and pixels
    expected = features.reshape(4, 2, 3, 2, 2).var(0, correction=0).add(1e-8).sqrt().flatten(1).mean(1).repeat(4)
    assert out.shape == (8, 4, 2, 2) and torch.equal(out[:, :3], features)
    assert torch.allclose(out[:, 3], expected.view(8, 1, 1).expand(8, 2, 2))


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("batch", [16, 6, 5])  # groups of 4, of 2 (gcd), of 1
def test_minibatch_std_lets_the_discriminator_see_a_lack_of_variety(arch: str, batch: int) -> None:
    _, discriminator = build_models(Config(arch=arch, width=8, minibatch_std=True))
    discriminator.eval()  # BatchNorm's running statistics: each image's logit depends on its batch only via the spread
    varied = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    repeated = varied[:1].expand(batch, -1, -1, -1)  # a collapsed generator: one image over and over
    logits_alone = discriminator(varied[:1])
    spread_changes_logit = not torch.allclose(discriminator(varied)[0], discriminator(repeated)[0])
    assert spread_changes_logit == (batch % 2 == 0)  # a group of 1 has no spread to see
    assert torch.allclose(discriminator(repeated)[0], logits_alone[0])  # no spread: as if the image were alone
    _, plain = build_models(Config(arch=arch, width=8, minibatch_std=False))
    plain.eval()
    assert torch.allclose(plain(varied)[0], plain(repeated)[0])  # without the layer D cannot tell


def test_minibatch_std_trains_and_old_checkpoints_keep_their_recipe() -> None:
    _, stats = fresh_step(minibatch_std=True)
    assert all(torch.isfinite(torch.tensor(value)) for value in stats.values())
    recipe = {"minibatch_std": True, "r1": 1.0, "r1_every": 8, "loss": "hinge", "lr_schedule": "linear", "lr_d": 4e-3,
              "ema_span": 1 / 3, "depth": 3}  # fmt: skip
    saved_before_these_settings = {k: v for k, v in Config(**recipe).to_dict().items() if k not in recipe}
    old = Config.from_dict(saved_before_these_settings)  # an old checkpoint is rebuilt as it was trained
    assert (old.minibatch_std, old.r1, old.r1_every, old.loss, old.lr_schedule, old.lr_d, old.ema_span, old.depth) == (
        False, 0.0, 1, "ns", "constant", 0.0, 1 / 9, 1
    )  # fmt: skip
    assert Config.from_dict(Config(**recipe).to_dict()) == Config(**recipe)


def test_adam_runs_fused_on_the_cpu_also_after_restoring_a_checkpoint_saved_without() -> None:
    config, cpu = Config(batch_size=16), torch.device("cpu")
    state = new_state(config, cpu)
    assert state.optimizer_g.defaults["fused"] and state.optimizer_d.defaults["fused"]
    train_step(state, torch.rand(16, 1, 28, 28) * 2 - 1, config.latent_dim, torch.float32)
    fields = formats.checkpoint_fields(state, config)
    for name in ("optimizer_g", "optimizer_d"):  # as checkpoints from before the fused kernel saved them
        for group in fields[name]["param_groups"]:
            group.update(fused=None, foreach=None)
    restored = formats.restore_checkpoint(fields, config, cpu)
    groups = restored.optimizer_g.param_groups + restored.optimizer_d.param_groups
    assert all(group["fused"] and group["foreach"] is None for group in groups)
    assert torch.equal(restored.optimizer_g.state_dict()["state"][0]["exp_avg"], state.optimizer_g.state[
        state.optimizer_g.param_groups[0]["params"][0]]["exp_avg"])  # fmt: skip
    train_step(restored, torch.rand(16, 1, 28, 28) * 2 - 1, config.latent_dim, torch.float32)


@pytest.mark.parametrize("img_size, stride_two_layers", [(32, 2), (64, 3)])
def test_a_deeper_dcgan_adds_a_same_size_convolution_after_each_stride_two_layer(img_size, stride_two_layers) -> None:
    def convolutions(model: nn.Module) -> list[tuple[int, int]]:  # (kernel, stride) of each layer
        return [
            (m.kernel_size[0], m.stride[0]) for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
        ]

    shape = {"arch": "dcgan", "dataset": "folder", "img_size": img_size, "width": 8, "latent_dim": 16}
    paper_g, paper_d = build_models(Config(**shape, depth=1))
    assert convolutions(paper_g) == convolutions(paper_d) == [(4, 2)] * stride_two_layers  # Radford et al.'s
    generator, discriminator = build_models(Config(**shape, depth=3))
    # G: two 3x3 layers after each stride-2 layer but the one that draws the image; D: after each but its first
    expected = [(4, 2), (3, 1), (3, 1)] * (stride_two_layers - 1)
    assert convolutions(generator) == expected + [(4, 2)] and convolutions(discriminator) == [(4, 2)] + expected
    images = generator(torch.randn(4, 16))
    assert images.shape == (4, 3, img_size, img_size) and discriminator(images).shape == (4,)
    assert Config(**shape).depth == 2  # the default
