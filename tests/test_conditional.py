"""Conditional models, the Python API (Sampler), latent walks and training animations (#12)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import ROOT, assert_clean_failure, quick_config, read_events, run
from mnist_gan import Sampler, train
from mnist_gan.config import Config
from mnist_gan.errors import MnistGanError
from mnist_gan.evaluator import evaluator_path, load_evaluator
from mnist_gan.models import build_models
from mnist_gan.state import new_state
from mnist_gan.step import train_step


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A short conditional MLP run on real MNIST: long enough for its classes to show."""
    config = quick_config(
        tmp_path_factory.mktemp("runs") / "conditional",
        arch="mlp",
        conditional=True,
        batch_size=64,
        max_batches=150,
        epochs=4,
        sample_interval=0,
        eval_samples=500,
        eval_every=4,  # the last epoch's evaluation is the one the tests read
        lr_schedule="constant",
    )
    return train(config)


def classify(images: torch.Tensor, data_dir: Path) -> torch.Tensor:
    evaluator, _ = load_evaluator("mnist", evaluator_path("mnist", data_dir))
    _, logits = evaluator.embed(images)
    return logits.argmax(1)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_a_conditional_discriminator_scores_image_and_class_together(arch: str) -> None:
    """The projection term makes D's logit depend on the claimed class; G's input carries the class."""
    torch.manual_seed(0)
    generator, discriminator = build_models(Config(arch=arch, conditional=True, num_classes=10, width=8))
    images = torch.rand(8, 1, 28, 28) * 2 - 1
    labels = torch.arange(8)
    assert not torch.allclose(discriminator(images, labels), discriminator(images, (labels + 1) % 10))
    z = torch.randn(8, 100)
    generator.eval()
    assert not torch.allclose(generator(z, labels), generator(z, (labels + 1) % 10))
    with pytest.raises(ValueError, match="needs the labels"):
        generator(z)


def test_an_unconditional_model_is_unchanged_by_the_conditional_code() -> None:
    """Same keys as before the conditional models existed, so every older checkpoint still loads."""
    generator, discriminator = build_models(Config(arch="mlp"))
    assert not any("embed" in key for key in [*generator.state_dict(), *discriminator.state_dict()])
    config = Config(arch="mlp", conditional=True, num_classes=10)
    state = new_state(config, torch.device("cpu"))
    stats = train_step(state, torch.rand(16, 1, 28, 28) * 2 - 1, 100, torch.float32, labels=torch.arange(16) % 10)
    assert all(torch.isfinite(value) for value in stats.values())


def test_a_conditional_run_draws_the_class_asked_for(conditional_run: Path, data_dir: Path, tmp_path: Path) -> None:
    """#12: samples asked for a label are classified as that label far more often than chance (10%): a test an
    unconditional generator fails. Per-epoch label accuracy reaches metrics.jsonl and TensorBoard."""
    sampler = Sampler.load(conditional_run / "generator.pth")
    assert sampler.num_classes == 10
    for label in (1, 7):
        predicted = classify(sampler.sample(200, seed=5, labels=label), data_dir)
        assert (predicted == label).float().mean() > 0.5, (label, torch.bincount(predicted, minlength=10))
    records = [json.loads(line) for line in (conditional_run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["label_accuracy"] > 0.5 and len(records[-1]["class_fids"]) == 10
    assert "metrics/label_accuracy" in read_events(conditional_run).Tags()["scalars"]

    result = run(
        "generate", "--run-dir", conditional_run, "--label", "7", "--num-images", "30", "--out", tmp_path / "7.npz"
    )
    assert result.exit_code == 0, result.output
    sevens = torch.from_numpy(np.load(tmp_path / "7.npz")["images"]).unsqueeze(1)
    assert (classify(sevens, data_dir) == 7).float().mean() > 0.5
    torch.testing.assert_close(sevens, sampler.sample(30, labels=7, as_uint8=True))  # the CLI draws as the API does


def test_labels_out_of_range_or_on_an_unconditional_generator_are_clear_errors(
    conditional_run: Path, trained_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.png"
    assert_clean_failure(run("generate", "--run-dir", conditional_run, "--label", "10", "--out", out), 2,
                         "--label", "label 10 is out of range", "classes 0 to 9")  # fmt: skip
    assert_clean_failure(run("generate", "--run-dir", trained_run, "--label", "3", "--out", out), 2,
                         "this generator is unconditional", "--conditional")  # fmt: skip
    assert_clean_failure(run("generate", "--run-dir", conditional_run, "--labels", "1,x", "--out", out), 2, "--labels")
    assert_clean_failure(run("generate", "--run-dir", conditional_run, "--label", "1", "--labels", "2", "--out", out),
                         2, "not both")  # fmt: skip
    assert not out.exists()


def test_per_class_grids_have_a_row_per_class(conditional_run: Path, tmp_path: Path) -> None:
    result = run("generate", "--run-dir", conditional_run, "--per-class", "3", "--out", tmp_path / "rows.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "rows.png") as grid:  # torchvision's grid: 2 pixels of padding around each image
        assert grid.size == (2 + 3 * 30, 2 + 10 * 30)
    result = run("generate", "--run-dir", conditional_run, "--per-class", "4", "--labels", "2,5", "--out",
                 tmp_path / "two.npz")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "two.npz")["images"].shape == (8, 28, 28)
    result = run("plot-checkpoint", "--run-dir", conditional_run, "--no-show", "--out", tmp_path / "plot.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "plot.png") as figure:
        assert figure.height > figure.width  # 10 rows of 8


def test_interpolation_ends_are_the_plain_samples_of_the_seeds(trained_run: Path, conditional_run: Path) -> None:
    for run_dir in (trained_run, conditional_run):
        sampler = Sampler.load(run_dir / "generator.pth")
        walk = sampler.interpolate([3, 9, 4], steps=5)
        assert len(walk) == 9  # 5 + 4: the shared end once
        torch.testing.assert_close(walk[0], sampler.sample(1, seed=3)[0])
        torch.testing.assert_close(walk[4], sampler.sample(1, seed=9)[0])
        torch.testing.assert_close(walk[-1], sampler.sample(1, seed=4)[0])
        assert not torch.allclose(walk[1], walk[0]) and not torch.allclose(walk[1], walk[4])
    sampler = Sampler.load(conditional_run / "generator.pth")
    morph = sampler.class_walk([1, 7], steps=6, seed=2)
    torch.testing.assert_close(morph[0], sampler.sample(1, seed=2, labels=1)[0])
    torch.testing.assert_close(morph[-1], sampler.sample(1, seed=2, labels=7)[0])


def test_interpolate_and_animate_write_gifs_with_the_expected_frames(conditional_run: Path, tmp_path: Path) -> None:
    result = run("interpolate", "--run-dir", conditional_run, "--seeds", "0,1,2", "--steps", "6", "--out",
                 tmp_path / "walk.gif")  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 11 and gif.size == (112, 112)  # 28 px digits enlarged 4x
    result = run("interpolate", "--run-dir", conditional_run, "--classes", "0,1,2,3", "--steps", "4", "--out",
                 tmp_path / "classes.png")  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "classes.png") as strip:
        assert strip.size == (2 + 10 * 30, 32)

    result = run("animate", conditional_run, "--out", tmp_path / "progress.gif")
    assert result.exit_code == 0, result.output
    epochs = len(list((conditional_run / "images").glob("epoch_*.png")))
    assert epochs == 4 and f"{epochs} epochs" in " ".join(result.output.split())
    with Image.open(tmp_path / "progress.gif") as gif:
        assert gif.n_frames == epochs
    assert_clean_failure(run("animate", tmp_path, "--out", tmp_path / "none.gif"), 1, "no epoch grids")


def test_conditional_needs_labelled_data(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for number in range(20):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(flat / f"{number}.png")
    result = run("main", "--dataset", "folder", "--data-dir", flat, "--img-size", "16", "--conditional", "--run-dir",
                 tmp_path / "run", "--batch-size", "4")  # fmt: skip
    assert_clean_failure(result, 2, "--conditional", "needs labelled data", "one class")
    assert not (tmp_path / "run").exists()


def test_the_readme_python_example_runs(conditional_run: Path, tmp_path: Path, monkeypatch) -> None:
    """The README's notebook example, as written, on a conditional run placed where it looks."""
    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert code, "the README has no API example"
    (tmp_path / "runs").mkdir()
    os.symlink(conditional_run, tmp_path / "runs" / "conditional")
    monkeypatch.chdir(tmp_path)
    exec(compile(code[1], "README.md", "exec"), {})
    with Image.open(tmp_path / "sevens.png") as picture:
        assert picture.size[0] > picture.size[1]


def test_a_per_class_grid_too_large_for_a_png_is_refused_before_sampling(conditional_run: Path, tmp_path: Path) -> None:
    result = run("generate", "--run-dir", conditional_run, "--per-class", "200", "--out", tmp_path / "big.png")
    assert_clean_failure(result, 1, "at most 1,024 images", "asked for 2,000")


def test_each_bad_class_or_seed_list_names_the_flag_it_came_from(
    conditional_run: Path, trained_run: Path, tmp_path: Path
) -> None:
    out, gif = tmp_path / "x.png", tmp_path / "x.gif"
    cases = [
        (("generate", "--run-dir", conditional_run, "--labels", "-1,2", "--out", out), "--labels", "out of range"),
        (("generate", "--run-dir", conditional_run, "--labels", "0,10", "--out", out), "--labels", "label 10"),
        (("generate", "--run-dir", conditional_run, "--labels", "0,10", "--per-class", "2", "--out", out),
         "--labels", "label 10"),
        (("interpolate", "--run-dir", conditional_run, "--classes", "0,10", "--out", gif), "--classes", "label 10"),
        (("generate", "--run-dir", trained_run, "--per-class", "2", "--out", out), "--per-class", "unconditional"),
        (("interpolate", "--run-dir", trained_run, "--classes", "0,1", "--out", gif), "--classes", "unconditional"),
        (("interpolate", "--run-dir", conditional_run, "--classes", "0,1", "--seeds", "0,1", "--out", gif),
         "--seeds", "takes no --seeds"),
        (("interpolate", "--run-dir", trained_run, "--seeds", "0,99999999999999999999", "--out", gif), "--seeds",
         "99999999999999999999 is out of range"),
    ]  # fmt: skip
    for args, flag, phrase in cases:
        assert_clean_failure(run(*args), 2, f"error: {flag}:", phrase)
    assert not out.exists() and not gif.exists()


BAD_CALLS = {
    "no images": lambda s: s.sample(0),
    "negative count": lambda s: s.sample(-1),
    "fractional count": lambda s: s.sample(2.5),
    "bool count": lambda s: s.sample(True),
    "31 GB": lambda s: s.sample(10**7),
    "huge seed": lambda s: s.sample(4, seed=2**70),
    "negative seed": lambda s: s.sample(4, seed=-1),
    "label as text": lambda s: s.sample(4, labels="7"),
    "fractional label": lambda s: s.sample(4, labels=1.7),
    "bool label": lambda s: s.sample(4, labels=True),
    "nested labels": lambda s: s.sample(4, labels=[[1, 2]]),
    "a label beyond int64": lambda s: s.sample(4, labels=[2**70]),
    "no labels": lambda s: s.sample(4, labels=[]),
    "weights of the wrong shape": lambda s: s.sample(4, labels=torch.ones(4, 3)),
    "negative weights": lambda s: s.sample(2, labels=-torch.ones(2, 10)),
    "no images per class": lambda s: s.per_class(0),
    "too many per class": lambda s: s.per_class(200_000),
    "huge walk seed": lambda s: s.interpolate([0, 2**40]),
    "a walk of one class": lambda s: s.class_walk([3]),
    "a walk of one step": lambda s: s.class_walk([0, 1], steps=1),
}


@pytest.mark.parametrize("call", list(BAD_CALLS))
def test_the_sampler_refuses_bad_arguments_with_its_own_error_before_drawing(conditional_run: Path, call) -> None:
    sampler = Sampler.load(conditional_run / "generator.pth", device="cpu")
    with pytest.raises(MnistGanError):
        BAD_CALLS[call](sampler)


def test_the_sampler_takes_class_weights_and_any_flat_sequence_of_classes(conditional_run: Path) -> None:
    sampler = Sampler.load(conditional_run / "generator.pth", device="cpu")
    threes = torch.zeros(6, 10)
    threes[:, 3] = 1
    torch.testing.assert_close(sampler.sample(6, labels=threes), sampler.sample(6, labels=3))
    cycle = sampler.sample(6, labels=[1, 2])
    for same in (np.array([1, 2]), torch.tensor([1, 2]), (1, 2), range(1, 3)):
        torch.testing.assert_close(sampler.sample(6, labels=same), cycle)
