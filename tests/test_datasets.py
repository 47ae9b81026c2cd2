"""Datasets beyond MNIST: any folder of images, decoded once and cached, in colour through training and output."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import SHAPE_COLOURS, SHAPES, assert_clean_failure, make_shapes_folder, read_events, runner
from mnist_gan import checkpoints, formats
from mnist_gan.__main__ import app
from mnist_gan.data import folder, load_dataset
from mnist_gan.errors import DataError


def test_a_folder_gives_rgb_images_at_the_chosen_size_and_labels_from_its_class_folders(tmp_path: Path) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=4)
    Image.new("L", (50, 20), 200).save(root / "circle" / "grey_and_wide.jpg")  # grey, not square, another format
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(root / "square" / "tiny_with_alpha.webp")
    (root / "square" / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    images, labels = load_dataset("folder", root, img_size=16)
    assert images.dtype == torch.uint8 and tuple(images.shape) == (14, 3, 16, 16)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 4  # sorted class folders, sorted files
    grey = images[4]  # circle/grey_and_wide.jpg sorts after circle/003.png
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2]) and abs(int(grey.float().mean()) - 200) <= 2
    centre = images[2, :, 6:10, 6:10].float().mean((1, 2))  # a circle, red, near the centre of most samples
    assert centre.argmax() == 0 or images[2].float().mean((1, 2)).argmax() == 0
    assert tuple(SHAPE_COLOURS) == SHAPES


def test_a_folder_without_class_folders_is_one_class(tmp_path: Path) -> None:
    for number in range(3):
        Image.new("RGB", (10, 10), (number * 50, 0, 0)).save(tmp_path / f"{number}.png")
    _, labels = load_dataset("folder", tmp_path, img_size=8)
    assert labels.tolist() == [0, 0, 0]


def test_decoded_images_are_cached_beside_the_data_and_refreshed_when_the_folder_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=3)
    first, _ = load_dataset("folder", root, img_size=16)
    cached = sorted(path.name for path in (root / folder.CACHE_DIR).iterdir())
    assert len(cached) == 2 and cached[0].endswith(".images.npy") and cached[1].endswith(".labels.npy")

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr(folder, "decode_all", no_decoding)
        again, _ = load_dataset("folder", root, img_size=16)
    assert torch.equal(first, again)
    Image.new("RGB", (16, 16), (255, 255, 255)).save(root / "square" / "new.png")
    changed, labels = load_dataset("folder", root, img_size=16)
    assert len(changed) == len(first) + 1 and labels.tolist().count(1) == 4
    assert len(list((root / folder.CACHE_DIR).iterdir())) == 4  # another size or content: another cache


def test_unreadable_images_are_skipped_with_one_warning_that_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=3)
    good = (root / "circle" / "000.png").read_bytes()
    (root / "circle" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "square" / "garbage.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with caplog.at_level(logging.WARNING):
        images, labels = load_dataset("folder", root, img_size=16)
    assert len(images) == 9 and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert "skipped 2 of 11 image files that could not be read" in caplog.text
    assert "truncated.png" in caplog.text and "garbage.jpg" in caplog.text


def test_a_huge_image_is_skipped_not_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=2)
    Image.new("RGB", (400, 300)).save(root / "square" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # Pillow's guard against decompression bombs
    with caplog.at_level(logging.WARNING):
        images, _ = load_dataset("folder", root, img_size=16)
    assert len(images) == 6 and "huge.png (DecompressionBombWarning" in caplog.text


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: None, "no images in"),
        (lambda root: (root / "readme.txt").write_text("hello"), "no images in"),
        (lambda root: (root / "a.png").write_bytes(b"not a png"), "could be read"),
    ],
    ids=["empty", "no image files", "only broken images"],
)
def test_a_folder_with_nothing_to_learn_from_is_one_clear_error(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "images"
    root.mkdir()
    make(root)
    with pytest.raises(DataError, match=message):
        load_dataset("folder", root, img_size=16)
    result = runner.invoke(app, ["main", "--dataset", "folder", "--data-dir", str(root), "--run-dir",
                                 str(tmp_path / "run")])  # fmt: skip
    assert_clean_failure(result, 1, message)
    assert not (tmp_path / "run").exists()


def test_an_image_size_the_dcgan_cannot_build_is_a_flag_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["main", "--dataset", "folder", "--data-dir", str(tmp_path), "--arch", "dcgan",
                                 "--img-size", "48"])  # fmt: skip
    assert_clean_failure(result, 2, "--img-size", "64, 128 or 256")


def test_a_folder_run_trains_in_colour_and_its_outputs_are_rgb(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=16)
    run_dir = tmp_path / "run"
    flags = ["--dataset", "folder", "--data-dir", str(root), "--img-size", "32", "--arch", "dcgan", "--width", "8",
             "--batch-size", "16", "--epochs", "2", "--sample-interval", "2", "--run-dir", str(run_dir)]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        result = runner.invoke(app, ["main", *flags])
    assert result.exit_code == 0, result.output
    assert "quality metrics are off: no evaluator for folder" in caplog.text
    assert [path.name for path in checkpoints.list_checkpoints(run_dir)] == ["epoch_000.pt", "epoch_001.pt"]
    payload = formats.load(checkpoints.latest_checkpoint(run_dir))
    assert payload["config"]["channels"] == 3 and payload["config"]["img_size"] == 32

    grid = Image.open(run_dir / "images" / "epoch_1.png")
    assert grid.mode == "RGB" and np.asarray(grid).std(axis=2).max() > 0  # not grey
    events = read_events(run_dir)
    image_tags = events.Tags()["images"]
    assert image_tags
    encoded = events.Images(image_tags[0])[-1].encoded_image_string
    assert Image.open(io.BytesIO(encoded)).mode == "RGB"

    elsewhere = {"MNIST_GAN_DATA_DIR": str(tmp_path / "elsewhere")}  # a default, not a change of the run's data
    result = runner.invoke(app, ["main", "--resume", "--run-dir", str(run_dir), "--epochs", "3"], env=elsewhere)
    assert result.exit_code == 0, result.output
    assert "data_dir changed" not in result.output
    assert checkpoints.latest_checkpoint(run_dir).name == "epoch_002.pt"

    samples = tmp_path / "samples.npz"
    result = runner.invoke(app, ["generate", "--checkpoint", str(run_dir / "generator.pth"), "--num-images", "10",
                                 "--out", str(samples)])  # fmt: skip
    assert result.exit_code == 0, result.output
    with np.load(samples) as saved:
        assert saved["images"].shape == (10, 32, 32, 3) and saved["images"].dtype == np.uint8
    figure = tmp_path / "plot.png"
    result = runner.invoke(app, ["plot-checkpoint", "--run-dir", str(run_dir), "--out", str(figure), "--no-show"])
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(figure).convert("RGB")).std(axis=2).max() > 0  # drawn in colour
