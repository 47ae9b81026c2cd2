"""DiffAugment (--augment): each transform does what it says, per image, and gradients flow through it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import DATA_DIR, assert_clean_failure, run
from mnist_gan.augment import TRANSFORMS, color, cutout, diff_augment, translation
from mnist_gan.config import AUGMENTATIONS, Config
from mnist_gan.errors import ConfigError
from mnist_gan.state import new_state
from mnist_gan.step import train_step


def test_the_config_knows_every_transform_and_refuses_others() -> None:
    assert tuple(TRANSFORMS) == AUGMENTATIONS
    assert Config(augment=" color, cutout ,").augmentations == ("color", "cutout") and Config().augmentations == ()
    with pytest.raises(ConfigError, match="unknown transform"):
        Config(augment="color,rotate")


def test_translation_moves_each_image_by_at_most_an_eighth_and_fills_with_zeros() -> None:
    torch.manual_seed(0)
    images = torch.zeros(64, 3, 16, 16)
    images[:, :, 8, 8] = 1.0  # one bright pixel per image
    shifted = translation(images)
    positions = torch.stack([(image[0] == 1).nonzero()[0] for image in shifted])
    offsets = positions - 8
    assert offsets.abs().max() <= 2 and len({tuple(o) for o in offsets.tolist()}) > 5  # per image, up to 16/8
    assert (shifted.flatten(1).sum(1) == 3).all()  # moved, not smeared; the rest stays 0
    assert translation(torch.ones(8, 1, 16, 16)).min() == 0  # what comes in from outside is zero


def test_cutout_zeroes_one_square_of_half_the_side_at_most() -> None:
    torch.manual_seed(0)
    cut = cutout(torch.ones(32, 3, 16, 16))
    zeroed = (cut[:, 0] == 0).flatten(1).sum(1)
    assert zeroed.max() == 64 and zeroed.min() > 0  # an 8 x 8 square, partly outside the image at times
    assert torch.equal(cut[:, 0], cut[:, 2])  # the same square in every channel


def test_color_changes_each_image_its_own_way_and_grey_stays_grey() -> None:
    torch.manual_seed(0)
    images = torch.rand(16, 3, 8, 8) * 2 - 1
    changed = color(images)
    assert not torch.allclose(changed, images)
    means = (changed - images).mean(dim=(1, 2, 3))
    assert means.std() > 0.05  # brightness drawn per image
    grey = color(torch.rand(4, 1, 8, 8))
    assert grey.shape == (4, 1, 8, 8)


def test_gradients_flow_through_every_transform_and_an_empty_policy_is_the_identity() -> None:
    images = torch.rand(4, 3, 16, 16, requires_grad=True)
    diff_augment(images, AUGMENTATIONS).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert diff_augment(images, ()) is images


def test_a_step_with_augmentation_and_r1_trains() -> None:
    config = Config(arch="dcgan", width=8, dataset="folder", img_size=16, augment="color,translation,cutout")
    state = new_state(config, torch.device("cpu"))
    before = [p.detach().clone() for p in state.discriminator.parameters()]
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    stats = train_step(state, real, 100, torch.float32, r1=4.0, augment=config.augmentations)
    assert all(torch.isfinite(value) for value in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, state.discriminator.parameters(), strict=True))


def test_an_unknown_transform_on_the_command_line_is_one_clear_error(tmp_path: Path) -> None:
    result = run("main", "--data-dir", DATA_DIR, "--run-dir", tmp_path / "run", "--augment", "colour")
    assert_clean_failure(result, 2, "unknown transform(s) colour", "color, translation, cutout")
    assert not (tmp_path / "run").exists()
