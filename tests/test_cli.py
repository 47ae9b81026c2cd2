"""The command line: help, generate, plot-checkpoint, and one clear error for every bad input."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import typer
from PIL import Image

from helpers import assert_clean_failure, run
from mnist_gan import __main__ as main_module
from mnist_gan import formats, trainer
from mnist_gan.__main__ import app, user_errors
from mnist_gan.cli import option_help
from mnist_gan.config import Config
from mnist_gan.distributed import RankFailed


def test_help_lists_every_command_and_each_command_lists_its_options() -> None:
    commands = typer.main.get_command(app).commands
    assert set(commands) == {
        "main", "plot-checkpoint", "generate", "interpolate", "animate", "train-evaluator", "evaluate", "compare"
    }  # fmt: skip
    result = run("--help")
    assert result.exit_code == 0 and all(name in result.output for name in commands)
    for name, command in commands.items():
        help_text = run(name, "--help")
        assert help_text.exit_code == 0, help_text.output
        for option in (opt for param in command.params for opt in param.opts if opt.startswith("--")):
            assert option in help_text.output, (name, option)


def test_a_flag_s_help_names_what_each_dataset_trains_with() -> None:
    """The default shown is MNIST's recipe; where the other datasets train with another value, the help says so."""
    assert "mnist: 0.2; fashion-mnist, cifar10, celeba, folder: 1.0" in option_help("r1", "R1's weight.")
    assert "mnist: 7; fashion-mnist: 6; folder: 60; cifar10, celeba: 50" in option_help("epochs", "Passes.")
    assert "fashion-mnist: 1/3" in option_help("ema_span", "Span.")  # a recipe's fraction, as it means it
    assert "mnist: 50; fashion-mnist, cifar10, celeba, folder: 0" in option_help("clusters", "Clusters.")
    assert option_help("arch", "Architecture.") == "Architecture. (one of: dcgan, mlp)"  # every recipe: the DCGAN


def test_every_config_field_is_a_main_flag_whose_value_reaches_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every hyperparameter is a flag of `main`, and the value typed arrives in the Config under its name;
    num_classes is not a setting but a fact of the data, counted when a conditional run starts."""
    flags = {opt for param in typer.main.get_command(app).commands["main"].params for opt in param.opts}
    fields = {field.name for field in dataclasses.fields(Config)} - {"num_classes"}
    assert {"--" + name.replace("_", "-") for name in fields} <= flags
    typed = dict(dataset="folder", data_dir="elsewhere", download=False, img_size=32, channels=3, background="black",
                 arch="dcgan",
                 latent_dim=64, width=16, depth=3, spectral_norm=True, minibatch_std=False, conditional=True, clusters=9,
                 epochs=7,
                 batch_size=48, lr=1e-3, b1=0.3, b2=0.95, lr_d=5e-4, lr_schedule="constant", loss="hinge",
                 augment="translation,cutout", r1=2.0,
                 r1_every=3, ema_decay=0.99, ema_span=0.25, precision="fp32", compile=True, sync_batchnorm=True,
                 max_batches=9, time_budget=1.5, run_dir="somewhere", log_every=7, sample_interval=11, eval_every=2,
                 eval_samples=300, inception_fid=True, inception_weights="w.pth", keep_last=5, seed=13,
                 device="cpu")  # fmt: skip
    assert set(typed) == fields and all(typed[name] != getattr(Config(), name) for name in typed)
    accepted = []
    monkeypatch.setattr(trainer, "train", accepted.append)  # parsing only
    args = [item for name, value in typed.items() for item in flag_and_value(name, value)]
    result = run("main", *args)
    assert result.exit_code == 0, result.output
    assert accepted == [Config(**typed)]


def flag_and_value(name: str, value) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    return [flag, str(value)]


def test_generate_png_and_npz(trained_run: Path, tmp_path: Path) -> None:
    result = run("generate", "--run-dir", trained_run, "--num-images", 8, "--out", tmp_path / "fake.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "fake.png") as grid:
        assert grid.size == (3 * 30 + 2, 3 * 30 + 2)  # 8 images in a 3 x 3 grid

    for name in ("a.npz", "b.npz"):
        result = run(
            "generate",
            "--checkpoint",
            trained_run / "generator.pth",
            "--num-images",
            5,
            "--seed",
            7,
            "--out",
            tmp_path / name,
        )
        assert result.exit_code == 0, result.output
    first, second = np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"]
    assert first.shape == (5, 28, 28) and first.dtype == np.uint8
    assert np.array_equal(first, second)  # the same seed gives the same images
    assert first.std() > 0


def test_generate_and_interpolate_draw_from_the_checkpoint_evaluate_scores(trained_run: Path, tmp_path: Path) -> None:
    """A run's best.pt (else its latest checkpoint): on Fashion-MNIST the last epochs scored worse than the best."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    first, latest = sorted((run_dir / "checkpoints").glob("epoch_*.pt"))
    shutil.copy(first, run_dir / "best.pt")  # as when the first epoch scored best

    def drawn(command: str, *source: Path | str) -> tuple[np.ndarray, str]:
        out = tmp_path / ("drawn.npz" if command == "generate" else "drawn.png")
        size = ["--num-images", 4] if command == "generate" else ["--steps", 3]
        result = run(command, *source, *size, "--out", out)
        assert result.exit_code == 0, result.output
        said = "".join(result.output.split())  # Rich wraps long paths, even mid-name
        if command == "generate":
            return np.load(out)["images"], said
        with Image.open(out) as strip:
            return np.asarray(strip), said

    for command in ("generate", "interpolate"):
        from_run, said = drawn(command, "--run-dir", run_dir)
        assert command != "generate" or f"from{run_dir / 'best.pt'}to" in said
        assert np.array_equal(from_run, drawn(command, "--checkpoint", run_dir / "best.pt")[0])
        assert not np.array_equal(from_run, drawn(command, "--checkpoint", latest)[0])
    (run_dir / "best.pt").unlink()  # no best.pt (no evaluator, or --eval-every 0): the latest
    from_run, said = drawn("generate", "--run-dir", run_dir)
    assert f"from{latest}to" in said and np.array_equal(from_run, drawn("generate", "--checkpoint", latest)[0])


def test_plot_checkpoint_renders_a_titled_grid(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    result = run("plot-checkpoint", "--run-dir", trained_run, "--grid", 4, "--out", out, "--no-show")
    assert result.exit_code == 0, result.output
    with Image.open(out) as figure:
        assert figure.size == (600, 640)
        assert len(np.unique(np.asarray(figure.convert("L")))) > 10  # a real picture, not a blank canvas


@pytest.mark.parametrize(
    "args, code, phrase",
    [
        (["--arch", "transformer"], 2, "--arch: unknown arch 'transformer'; choose one of: dcgan, mlp"),
        (["--epochs", "-1"], 2, "--epochs"),
        (["--lr", "0"], 2, "--lr: lr must be in (0, 1)"),
        # in range for the flag parser, but they crashed once training started (#8.11): refused up front now
        (["--batch-size", "1"], 2, "--batch-size: batch_size must be between 2"),
        (["--channels", "3"], 2, "mnist images have 1 channel(s)"),
        (["--eval-samples", "3"], 2, "--eval-samples: eval_samples must be between 100"),
        (["--dataset", "cifar"], 2, "--dataset: unknown dataset"),
        (["--device", "tpu"], 2, "--device: unknown device"),
    ],
)
def test_bad_flags_are_usage_errors(args: list[str], code: int, phrase: str) -> None:
    assert_clean_failure(run("main", *args), code, phrase)


def test_missing_data_without_download(tmp_path: Path) -> None:
    result = run("main", "--data-dir", tmp_path / "empty", "--no-download", "--run-dir", tmp_path / "run")
    assert_clean_failure(result, 1, "mnist is not in --data-dir", "train-images-idx3-ubyte", "MNIST_GAN_DATA_DIR")


def test_missing_data_when_the_download_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self) -> None:
        raise URLError("no network")

    from torchvision.datasets import MNIST  # what the loader downloads with, imported only then

    monkeypatch.setattr(MNIST, "download", offline)
    result = run("main", "--data-dir", tmp_path / "empty", "--run-dir", tmp_path / "run")
    assert_clean_failure(result, 1, "could not be downloaded", "no network", "--data-dir")


def test_missing_and_corrupt_checkpoints(tmp_path: Path, trained_run: Path) -> None:
    assert_clean_failure(run("generate", "--checkpoint", tmp_path / "nope.pt"), 1, "no checkpoint file at")
    assert_clean_failure(run("plot-checkpoint", "--run-dir", tmp_path / "empty-run"), 1, "no checkpoint in")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((trained_run / "generator.pth").read_bytes()[:2000])
    assert_clean_failure(
        run("generate", "--checkpoint", corrupt, "--out", tmp_path / "x.png"),
        1,
        str(corrupt),
        "not a readable mnist_gan checkpoint",
        "truncated",
    )
    assert not (tmp_path / "x.png").exists()
    text = tmp_path / "notes.pt"  # a file of another kind: torch.load's own message said "list index out of range"
    text.write_text("not a checkpoint\n")
    result = run("generate", "--checkpoint", text, "--out", tmp_path / "x.png")
    assert_clean_failure(result, 1, str(text), "not a whole file written by torch.save")
    assert "list index out of range" not in result.output


def test_an_error_on_its_way_out_is_still_shown_when_a_signal_ends_the_process(capsys) -> None:
    """Under torchrun a rank whose peer died leaves with RankFailed, and torchrun's SIGTERM can arrive while it does
    (leaving the process group, say); the SystemExit the signal raises must not hide why the run stopped."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stopped, user_errors():
            try:
                raise RankFailed("rank 0: another rank stopped, so this one cannot go on")
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # the handler raises at the next bytecode, replacing the error
    finally:
        for number, handler in handlers.items():  # user_errors ignores further signals once stopped by one
            signal.signal(number, handler)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "error: rank 0: another rank stopped" in capsys.readouterr().err


def test_a_signal_while_the_error_is_being_shown_does_not_cut_it_short(capsys, monkeypatch) -> None:
    """torchrun's SIGTERM can also land while the message itself is printed (rich's first print imports its emoji
    table: milliseconds); it is ignored then, and the error's own exit code stands."""
    printed = main_module.console.print

    def print_under_sigterm(*args, **kwargs) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        printed(*args, **kwargs)

    monkeypatch.setattr(main_module.console, "print", print_under_sigterm)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(typer.Exit) as stopped, user_errors():
        raise RankFailed("rank 0: another rank stopped, so this one cannot go on")
    assert stopped.value.exit_code == RankFailed.exit_code
    assert "error: rank 0: another rank stopped" in capsys.readouterr().err
    assert {number: signal.getsignal(number) for number in handlers} == handlers  # put back for whoever called


def test_existing_run_is_not_overwritten(trained_run: Path, tmp_path: Path, data_dir: Path) -> None:
    copy = shutil.copytree(trained_run, tmp_path / "copy")
    before = sorted(p.name for p in (copy / "checkpoints").iterdir())
    result = run("main", "--data-dir", data_dir, "--run-dir", copy)
    assert_clean_failure(result, 1, "already holds a run", "--resume")
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == before


@pytest.mark.slow
def test_python_dash_m_main_end_to_end(tmp_path: Path, data_dir: Path) -> None:
    """The real entry point in a subprocess: train, resume for one more epoch, generate."""
    command = [sys.executable, "-m", "mnist_gan"]
    common = [
        "--data-dir",
        str(data_dir),
        "--max-batches",
        "5",
        "--batch-size",
        "32",
        "--width",
        "8",
        "--eval-samples",
        "200",
    ]
    subprocess.run([*command, "main", "--epochs", "1", *common], cwd=tmp_path, check=True, capture_output=True)
    run_dir = next((tmp_path / "runs").iterdir())  # the default run folder, named by date and time
    subprocess.run(
        [*command, "main", "--resume", "--epochs", "2"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env={**__import__("os").environ, "MNIST_GAN_DATA_DIR": str(data_dir)},
    )
    assert (run_dir / "checkpoints" / "epoch_001.pt").exists()
    config = formats.load(run_dir / "checkpoints" / "epoch_001.pt")["config"]
    assert config["conditional"] and config["num_classes"] == 10  # MNIST's recipe, from plain `main`
    assert (config["b1"], config["b2"]) == (0.0, 0.99)
    subprocess.run([*command, "generate"], cwd=tmp_path, check=True, capture_output=True)
    with Image.open(tmp_path / "fake_images.png") as grid:
        assert grid.size == (3 * 30 + 2, 3 * 30 + 2)
