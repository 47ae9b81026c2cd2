"""Smoke test: the benchmarks' code still runs (tiny windows; the real figures come from running the scripts)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from batchnorm_statistics import score_statistics  # noqa: E402
from classic_dcgan import ClassicDCGAN, classic_samples  # noqa: E402
from common import ClassicLoop, MnistGanLoop, images_per_second, train_with_snapshots  # noqa: E402
from sanity_ladder import blurred  # noqa: E402
from throughput import flops_per_step, matmul_peak_gflops, profile_table  # noqa: E402
from time_to_quality import train_with_budgets  # noqa: E402

from helpers import make_shapes_folder, runner  # noqa: E402
from mnist_gan.__main__ import app  # noqa: E402
from mnist_gan.config import Config  # noqa: E402
from mnist_gan.data import load_dataset  # noqa: E402
from mnist_gan.metrics import quality_meter  # noqa: E402
from mnist_gan.sampling import sample_images  # noqa: E402

# They train real loops, so they run with the end-to-end tests (deselect with -m 'not slow').
pytestmark = pytest.mark.slow


def test_both_loops_train_and_snapshot(data_dir: Path) -> None:
    loops = [ClassicLoop(str(data_dir)), MnistGanLoop(Config(width=8), str(data_dir))]
    for loop in loops:
        assert images_per_second(loop, seconds=0.3, warmup_steps=2) > 0
        snapshots: list[tuple[float, int, torch.nn.Module]] = []
        train_with_snapshots(loop, [0.1, 0.3], lambda *snapshot, found=snapshots: found.append(snapshot))
        seconds = [measured for measured, _, _ in snapshots]
        assert seconds[0] >= 0.1 and seconds[1] >= 0.3 and seconds[0] < seconds[1], (
            seconds
        )  # measured, past each budget
        assert seconds != [0.1, 0.3]  # not the budgets handed back
        assert snapshots[0][1] < snapshots[1][1]
        assert snapshots[-1][2](torch.randn(2, 100)).shape == (2, 1, 28, 28)
        assert sample_images(snapshots[-1][2], 4, 100).shape == (4, 1, 28, 28)  # as time_to_quality scores it


def test_batchnorm_statistics_scores_the_saved_ones_then_each_measurement(trained_run: Path) -> None:
    rows = score_statistics(trained_run, [1, 2], images=256, num_images=200)
    assert [row["statistics"] for row in rows] == ["saved", "measured, seed 1", "measured, seed 2"]
    assert all(math.isfinite(row["fid"]) and row["fid"] > 0 for row in rows)
    assert rows[1]["fid"] != rows[2]["fid"]  # other noise, other statistics: the measurement's spread shows


def test_flop_count_and_peak(data_dir: Path) -> None:
    loop = MnistGanLoop(Config(arch="mlp", batch_size=8), str(data_dir))
    # MLP: forward G (~1.5M MACs/image) and D (~0.5M) several times per step: well over 10 MFLOP for 8 images.
    assert flops_per_step(loop) > 10e6
    assert matmul_peak_gflops(torch.float32, torch.device("cpu"), size=256, repeats=2) > 0
    table = profile_table(loop, steps=2, rows=5)
    assert "aten::addmm" in table or "aten::mm" in table  # the MLP's layers, among the top five operators


def test_the_default_loop_trains_the_conditional_recipe_on_the_labels(data_dir: Path) -> None:
    loop = MnistGanLoop(Config.for_dataset(batch_size=8), str(data_dir))  # what `main` trains on MNIST
    assert loop.config.conditional and loop.config.num_classes == 10  # counted from the labels, as train does
    class_vectors = loop.state.discriminator.embed.weight.detach().clone()
    loop.step(next(loop.batches()))
    assert not torch.equal(loop.state.discriminator.embed.weight, class_vectors)  # D learned from the labels
    assert sample_images(loop.sampler(), 4, 100).shape == (4, 1, 28, 28)


def test_mnist_gan_trains_one_budgeted_run_per_budget(data_dir: Path) -> None:
    config = Config.for_dataset(data_dir=str(data_dir), batch_size=64, eval_every=0, sample_interval=0)
    results: list[tuple[float, int, torch.nn.Module]] = []
    train_with_budgets(config, [1.0, 2.0], lambda *result: results.append(result))
    (short_seconds, short_steps, _), (long_seconds, long_steps, generator) = results
    # each run stopped by its own budget, not by its epochs (and then measured, sampled and saved: seconds it counts).
    # The steps tell the budgets apart; the seconds do not: the work after the budget took some 3 s on a slow host,
    # varying by more than the 1 s between the budgets (4.93 s for 1 s against 4.75 s for 2 s once).
    assert short_seconds >= 1.0 and long_seconds >= 2.0
    assert 0 < short_steps < long_steps
    assert sample_images(generator, 4, 100).shape == (4, 1, 28, 28)


def test_the_colour_benchmarks_run_on_a_folder(tmp_path: Path) -> None:
    """classic_dcgan.py's loop trains on a folder and its samples are scored; sanity_ladder.py's blur keeps the
    images' shape and changes them."""
    root = make_shapes_folder(tmp_path / "shapes", per_class=40)
    loop = ClassicDCGAN(str(root))  # first: ImageFolder would take the cache folder for a class
    result = runner.invoke(app, ["train-evaluator", "--dataset", "folder", "--data-dir", str(root), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    loop.step(next(loop.batches()))
    images = classic_samples(loop.sampler(), 100)
    assert images.shape == (100, 3, 64, 64) and images.dtype == torch.uint8
    meter = quality_meter("folder", root)
    assert meter.score(images)["fid"] > meter.reference["fid"]
    real, _ = load_dataset("folder", root)
    assert blurred(real).shape == real.shape and not torch.equal(blurred(real), real)


def test_time_to_quality_refuses_the_classic_loop_on_other_data(data_dir: Path) -> None:
    # The classic loop trains MNIST only: scored against Fashion-MNIST's evaluator its figures would mean nothing.
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_quality.py"
    command = [sys.executable, str(script), "--set", "dataset=fashion-mnist", "--budgets", "0.01"]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "MNIST_GAN_DATA_DIR": str(data_dir)}
    )
    assert result.returncode == 2 and "the classic loop trains MNIST only" in result.stderr, result.stderr
