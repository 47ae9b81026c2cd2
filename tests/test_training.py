"""Real short training runs on MNIST: TensorBoard events, checkpoints, sample PNGs, resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.plugins.hparams import plugin_data_pb2

from helpers import parameters, quick_config, read_events
from mnist_gan import checkpoints, epochs, formats, resume, step, train
from mnist_gan.config import Config


def test_run_writes_events_checkpoints_and_samples(trained_run: Path) -> None:
    events = read_events(trained_run)
    scalars = set(events.Tags()["scalars"])
    assert {"loss/discriminator", "loss/generator", "D(x)", "D(G(z))", "speed/images_per_second"} <= scalars
    assert len(events.Scalars("loss/generator")) == 6  # 12 steps, logged every 2
    image = events.Images("samples/fixed_noise")
    assert len(image) == 2  # one grid per epoch
    assert (image[-1].width, image[-1].height) == (28 * 8, 28 * 8)  # the 64 fixed-noise samples as 8 x 8
    start = events.summary_metadata["_hparams_/session_start_info"].plugin_data.content
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["lr"].number_value == pytest.approx(Config().lr) and hparams["arch"].string_value == "dcgan"

    assert [path.name for path in checkpoints.list_checkpoints(trained_run)] == ["epoch_000.pt", "epoch_001.pt"]
    payload = formats.load(checkpoints.latest_checkpoint(trained_run))
    assert payload["epoch"] == 2 and payload["batches_done"] == 0 and payload["step"] == 12
    assert Config.from_dict(payload["config"]) == quick_config(trained_run)
    for key in ("generator", "discriminator", "optimizer_g", "optimizer_d", "rng_cpu", "fixed_noise"):
        assert key in payload

    pngs = sorted(path.name for path in (trained_run / "images").glob("*.png"))
    assert pngs == ["epoch_0.png", "epoch_1.png", "step_0000004.png", "step_0000008.png", "step_0000012.png"]
    with Image.open(trained_run / "images" / "epoch_1.png") as grid:
        assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 8 x 8 images of 28 px with 2 px padding
    generator, config, epochs_done = checkpoints.load_generator(trained_run / "generator.pth")
    assert epochs_done == 2 and generator(torch.randn(3, config.latent_dim)).shape == (3, 1, 28, 28)


def test_scalars_are_window_means_read_from_the_device_once_per_window(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No host sync per step (a GPU would wait for it): the statistics are summed on the device and read once
    per --log-every steps, and TensorBoard gets their mean over the window."""
    real_step, real_read, reads = step.train_step, epochs.StatsWindow.read, []

    def numbered_step(state, *args, **kwargs):
        return {**real_step(state, *args, **kwargs), "loss_d": torch.tensor(float(state.step + 1))}  # step n reports n

    def counted_read(window, session):
        reads.append(window.steps)
        return real_read(window, session)

    monkeypatch.setattr(step, "train_step", numbered_step)
    monkeypatch.setattr(epochs.StatsWindow, "read", counted_read)
    run = train(quick_config(tmp_path / "run", eval_every=0, log_every=3, sample_interval=0))
    logged = [(event.step, event.value) for event in read_events(run).Scalars("loss/discriminator")]
    assert logged == [(3, 2.0), (6, 5.0), (9, 8.0), (12, 11.0)]  # the means of steps 1-3, 4-6, ...
    assert [summed for summed in reads if summed] == [3, 3, 3, 3]  # 12 steps, 4 reads


def test_resume_continues_at_next_epoch_and_matches_an_uninterrupted_run(tmp_path: Path, data_dir: Path) -> None:
    # constant rates: a linear schedule would stretch over the 3 epochs the resumed run is given
    straight = train(quick_config(tmp_path / "straight", epochs=3, eval_every=0, lr_schedule="constant"))
    split = train(quick_config(tmp_path / "split", epochs=1, eval_every=0, lr_schedule="constant"))
    assert [p.name for p in checkpoints.list_checkpoints(split)] == ["epoch_000.pt"]
    resume(split, {"epochs": 3})
    assert [p.name for p in checkpoints.list_checkpoints(split)] == ["epoch_000.pt", "epoch_001.pt", "epoch_002.pt"]
    expected, actual = parameters(straight), parameters(split)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


@pytest.mark.slow
def test_time_budget_ends_the_run_cleanly_and_resume_continues_it(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--time-budget: the run stops after the step that spends it, evaluates, writes a resumable mid-epoch
    checkpoint, best.pt and generator.pth; --resume with a larger budget (or none) continues it."""
    caplog.set_level(logging.INFO)
    budget_minutes = 0.005  # 0.3 s, well inside one epoch of 400 batches
    run_dir = train(
        quick_config(tmp_path / "run", epochs=2, max_batches=400, sample_interval=0, time_budget=budget_minutes)
    )
    saved = checkpoints.list_checkpoints(run_dir)
    assert len(saved) == 1 and saved[0].name.startswith("epoch_000_batch_"), saved
    payload = formats.load(saved[0])
    assert (
        budget_minutes * 60 <= payload["elapsed"] < budget_minutes * 60 + 5
    )  # the step that spent it, and the final eval
    assert 0 < payload["batches_done"] < 400 and payload["epoch"] == 0
    assert (run_dir / "generator.pth").is_file() and (run_dir / "best.pt").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [payload["step"]]  # the final evaluation, at the stop
    assert f"time budget of 0.005 min spent at step {payload['step']} (epoch 1/2, batch" in caplog.text
    assert "epoch 1/2 done" not in caplog.text

    resume(run_dir, {"time_budget": 0.0, "epochs": 1})
    finished = formats.load(checkpoints.latest_checkpoint(run_dir))
    assert checkpoints.latest_checkpoint(run_dir).name == "epoch_000.pt" and finished["step"] == 400
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(record["epoch"], record["step"]) for record in records] == [(0, 400)]


@pytest.mark.slow
@pytest.mark.parametrize("r1", [1.0, 0.0])
def test_compile_trains_with_and_without_r1(tmp_path: Path, r1: float) -> None:
    """--compile compiles G, and D only when R1 is off: torch.compile cannot take R1's double backward through D
    (a compiled D crashed on the first R1 step). The checkpoints keep their plain keys."""
    run_dir = train(quick_config(tmp_path / "run", arch="mlp", compile=True, r1=r1, epochs=1, max_batches=5,
                                 eval_every=0, sample_interval=0))  # fmt: skip
    payload = formats.load(checkpoints.latest_checkpoint(run_dir))
    assert payload["step"] == 5 and not any("_orig_mod" in key for key in payload["generator"])
    assert all(torch.isfinite(value).all() for value in payload["discriminator"].values())
