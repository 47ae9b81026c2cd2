"""Inputs a user can get wrong: crafted or broken checkpoints, image files to score, damaged data, run records."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY_RUN, assert_clean_failure, copy_raw_data, forbidden, run, write_idx
from mnist_gan import checkpoints, formats, resume, scoring
from mnist_gan.errors import MnistGanError
from mnist_gan.metrics import quality_meter
from mnist_gan.scoring import load_images_file, match_channels


def crafted(source: Path, destination: Path, change) -> Path:
    """A copy of a real generator.pth with one field changed by `change(payload)`."""
    payload = torch.load(source, weights_only=True)
    change(payload)
    torch.save(payload, destination)
    return destination


def set_key(key, value):
    return lambda payload: payload.__setitem__(key, value)


def set_config(key, value):
    return lambda payload: payload["config"].__setitem__(key, value)


@pytest.mark.parametrize(
    "change, phrase",
    [
        (lambda payload: payload.pop("config"), "a config must be a dict"),
        (set_key("config", None), "a config must be a dict"),
        (set_key("config", "mlp"), "a config must be a dict"),
        (set_config("latent_dim", "100"), "latent_dim must be a int"),
        (set_config("latent_dim", 100.0), "latent_dim must be a int"),
        (set_config("latent_dim", 10**13), "latent_dim must be between 1 and 4,096"),
        (set_config("img_size", 700), "img_size must be between 8 and 256"),
        (set_key("version", "1"), "version must be an integer"),
        (lambda payload: payload.pop("generator"), "generator must be a dict of tensors"),
        (set_key("generator", [1, 2]), "generator must be a dict of tensors"),
    ],
)
def test_crafted_checkpoints_are_refused_before_anything_is_built(
    change, phrase: str, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#8.14: bad fields gave AttributeError/KeyError/TypeError; huge sizes allocated gigabytes first."""
    path = crafted(trained_run / "generator.pth", tmp_path / "crafted.pth", change)
    monkeypatch.setattr(checkpoints, "build_models", forbidden("a model was built"))
    result = run("generate", "--checkpoint", path, "--out", tmp_path / "x.png")
    assert_clean_failure(result, 1, str(path), phrase)
    assert not (tmp_path / "x.png").exists()


def test_resume_skips_a_newest_checkpoint_that_does_not_fit_its_model(
    trained_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="mnist_gan")
    """#8.14: a checkpoint that loads but whose weights do not fit is skipped like a corrupt one."""
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    newest = run_dir / "checkpoints" / "epoch_001.pt"
    payload = torch.load(newest, weights_only=True)
    name = next(iter(payload["discriminator"]))
    payload["discriminator"][name] = torch.zeros(3, 3)
    torch.save(payload, newest)
    resume(run_dir, {"epochs": 2, "eval_every": 0})
    warnings = caplog.messages
    assert any(
        "skipping broken checkpoint" in warning and "epoch_001.pt does not fit" in warning for warning in warnings
    )
    assert any("resuming" in warning and "epoch_000.pt" in warning for warning in warnings)
    assert formats.load(checkpoints.latest_checkpoint(run_dir))["epoch"] == 2


def test_weight_mismatch_names_the_weights(trained_run: Path, tmp_path: Path) -> None:
    """#8.19: the mismatch error kept only its first line, "Error(s) in loading state_dict"."""

    def widen(payload):
        payload["config"]["width"] = 16  # the weights are for width 8

    path = crafted(trained_run / "generator.pth", tmp_path / "wide.pth", widen)
    result = run("generate", "--checkpoint", path, "--out", tmp_path / "x.png")
    assert_clean_failure(result, 1, "weights do not fit a dcgan generator", "size mismatch for")


def test_nan_weights_are_refused_before_sampling_or_scoring(trained_run: Path, tmp_path: Path, data_dir: Path) -> None:
    """#8.9: FID segfaulted in oneMKL on NaN features; generate wrote black images without a word."""

    def poison(payload):
        name = next(iter(payload["generator"]))
        payload["generator"][name] = torch.full_like(payload["generator"][name], float("nan"))

    path = crafted(trained_run / "generator.pth", tmp_path / "nan.pth", poison)
    for command in (
        ["generate", "--checkpoint", path, "--out", tmp_path / "x.png"],
        ["evaluate", "--checkpoint", path, "--data-dir", data_dir, "--num-images", "100"],
    ):
        assert_clean_failure(run(*command), 1, "NaN or infinite weights", "earlier checkpoint")
    assert not (tmp_path / "x.png").exists()
    meter = quality_meter("mnist", data_dir)
    with pytest.raises(MnistGanError, match="NaN or infinite"):
        meter.score(torch.full((100, 1, 28, 28), float("nan")))


def real_digits(data_dir: Path, count: int) -> np.ndarray:
    raw = data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    return np.fromfile(raw, dtype=np.uint8, offset=16)[: count * 784].reshape(count, 28, 28)


def test_evaluate_accepts_the_common_image_layouts(tmp_path: Path, data_dir: Path) -> None:
    """#8.10: RGB, channel-first and plain .npy arrays gave tracebacks; they are converted now."""
    digits = real_digits(data_dir, 200)
    layouts = {
        "grey.npz": digits,
        "rgb.npz": np.repeat(digits[..., None], 3, axis=3),
        "first.npz": digits[:, None],
        "last.npz": digits[..., None],
        "plain.npy": digits,
    }
    for name, array in layouts.items():
        path = tmp_path / name
        np.save(path, array) if name.endswith(".npy") else np.savez(path, images=array)
        grey = match_channels(load_images_file(path), 1)  # the evaluator's channels: RGB becomes grey
        assert torch.equal(grey, torch.from_numpy(digits)[:, None]), name
    result = run("evaluate", "--images", tmp_path / "rgb.npz", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "200 images vs the mnist test split" in result.output


def test_evaluate_refuses_unusable_image_files_in_one_line(tmp_path: Path, data_dir: Path, trained_run: Path) -> None:
    """#8.10 and #8.19: too few images, truncated/empty/foreign files, and --images with --checkpoint."""
    digits = real_digits(data_dir, 200)
    cases = {}
    for count in (0, 1, 3, 99):
        np.savez(tmp_path / f"n{count}.npz", images=digits[:count])
        cases[f"n{count}.npz"] = f"holds {count:,} images; the metrics need 100"
    np.savez(tmp_path / "whole.npz", images=digits)
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:5000])
    cases["truncated.npz"] = "is not a readable .npz or .npy image array"
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    cases["empty.npz"] = "holds no arrays"
    shutil.copy(trained_run / "images" / "epoch_0.png", tmp_path / "picture.npz")
    cases["picture.npz"] = "is not a readable .npz or .npy image array"
    np.savez(tmp_path / "floats.npz", images=digits.astype(np.float32))
    cases["floats.npz"] = "expected uint8 pixels"
    np.savez(tmp_path / "flat.npz", images=digits.reshape(200, 784))
    cases["flat.npz"] = "expected images N x H x W"
    for name, phrase in cases.items():
        result = run("evaluate", "--images", tmp_path / name, "--data-dir", data_dir)
        assert_clean_failure(result, 1, phrase)
        assert "allow_pickle" not in result.output
    result = run("evaluate", "--images", tmp_path / "whole.npz", "--checkpoint", trained_run / "generator.pth")
    assert_clean_failure(result, 2, "cannot be combined with --checkpoint")


def test_evaluate_refuses_more_images_than_fit_in_memory(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#8.17: 1M images built an 8 GB distance chunk; the limit is stated instead."""
    np.savez(tmp_path / "many.npz", images=np.zeros((100_001, 8, 8), dtype=np.uint8))
    monkeypatch.setattr(scoring, "quality_meter", forbidden("the evaluator and the test split were loaded"))
    result = run("evaluate", "--images", tmp_path / "many.npz", "--data-dir", data_dir)
    assert_clean_failure(result, 1, "holds 100,001 images; the metrics need 100 to 100,000")


def test_compare_skips_a_half_written_line_and_records_without_fid(trained_run: Path, tmp_path: Path) -> None:
    """#8.13: what kill -9 leaves in metrics.jsonl gave a JSONDecodeError or KeyError traceback."""
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    with open(run_dir / "metrics.jsonl", "a") as file:
        file.write(json.dumps({"epoch": 2, "step": 14, "note": "no fid"}) + "\n")
        file.write('{"epoch": 3, "step": 16, "fid": 12')
    result = run("compare", run_dir, trained_run, "--out", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert "line 4 is incomplete and was skipped" in " ".join(result.output.split())
    assert "a record without" in result.output


def damage(data_root: Path, name: str, content: bytes) -> Path:
    path = data_root / "MNIST" / "raw" / name
    path.write_bytes(content)
    return path


def test_damaged_data_files_are_named(tmp_path: Path, data_dir: Path) -> None:
    """#8.15: garbage labels gave an IndexError; a truncated file was reported as missing."""
    common = [*TINY_RUN, "--eval-every", "1", "--no-download", "--run-dir", tmp_path / "run"]  # reads t10k too
    root = copy_raw_data(data_dir, tmp_path / "labels")
    labels = np.fromfile(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", dtype=np.uint8, offset=8).copy()
    labels[5] = 200
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", labels, 2049)
    assert_clean_failure(
        run("main", "--data-dir", root, *common),
        1,
        "t10k-labels-idx1-ubyte is damaged",
        "labels must be 0..9, found 0..200",
    )

    root = copy_raw_data(data_dir, tmp_path / "truncated")
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1_000_000])
    assert_clean_failure(
        run("main", "--data-dir", root, *common),
        1,
        "train-images-idx3-ubyte is truncated or damaged",
        "47,040,016 bytes",
    )

    root = copy_raw_data(data_dir, tmp_path / "foreign")
    damage(root, "train-labels-idx1-ubyte", b"<html>not found</html>")
    assert_clean_failure(
        run("main", "--data-dir", root, *common), 1, "train-labels-idx1-ubyte is not an MNIST labels file"
    )
    assert not (tmp_path / "run").exists()


def test_a_folder_of_gz_files_works_offline(tmp_path: Path, data_dir: Path) -> None:
    """#8.15: the message promises that the .gz files will do; with --no-download they did not."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in (data_dir / "MNIST" / "raw").iterdir():
        with gzip.open(raw / f"{path.name}.gz", "wb", compresslevel=1) as archive:
            archive.write(path.read_bytes())
    result = run("main", "--data-dir", tmp_path / "data", "--no-download", *TINY_RUN, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "generator.pth").is_file()


@pytest.mark.slow
def test_resizing_the_dataset_works_in_chunks(data_dir: Path) -> None:
    """#8.17: --img-size 64 cost +2.8 GB (the whole set resized in float at once); now about its uint8 size."""
    program = (
        "import resource, sys; from mnist_gan.data import load_dataset\n"
        "images, _ = load_dataset('mnist', sys.argv[1], img_size=int(sys.argv[2]), download=False)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
    )
    peak = {
        size: int(
            subprocess.run(
                [sys.executable, "-c", program, str(data_dir), str(size)], check=True, capture_output=True, text=True
            ).stdout
        )
        for size in (28, 64)
    }
    uint8_size = 60_000 * 64 * 64
    assert peak[64] - peak[28] < 2 * uint8_size, peak  # float32 at once would be 4x, plus the interpolation's copies


def test_error_messages_with_brackets_are_printed_as_written(tmp_path: Path) -> None:
    """A path (or a library's message) may hold [text like markup]: the error line shows it, not a crash."""
    missing = tmp_path / "runs[/old]" / "model[1].pt"
    result = run("generate", "--checkpoint", missing, "--out", tmp_path / "x.png")
    assert_clean_failure(result, 1, "[/old]", "model[1].pt")
