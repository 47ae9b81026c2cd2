"""Runs that survive: kill -9, Ctrl-C and exact resume, unsafe and broken files, bad settings, full or read-only disks."""

from __future__ import annotations

import os
import pickle
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import assert_clean_failure, cli_command, parameters, quick_config, runner, wait_for
from mnist_gan import checkpoints, formats, resume, step, train, trainer
from mnist_gan.__main__ import app
from mnist_gan.errors import CheckpointError, ConfigError, TrainingDiverged


@pytest.mark.slow
def test_sigint_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path: Path, data_dir: Path) -> None:
    # A grid at step 110 tells when training is inside epoch 1 (steps 101-200), on any machine's speed;
    # drawing it does not touch the weights or the random streams.
    settings_ = ("--epochs", "2", "--max-batches", "100", "--sample-interval", "110")
    straight = tmp_path / "straight"
    subprocess.run(cli_command(data_dir, straight, *settings_), check=True, capture_output=True)

    interrupted = tmp_path / "an interrupted run"  # a space: the resume hint must quote it
    process = subprocess.Popen(cli_command(data_dir, interrupted, *settings_), stderr=subprocess.PIPE, text=True)
    wait_for((interrupted / "images", "step_0000110.png"), process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    hint = f"Resume with: python -m mnist_gan main --resume --run-dir {shlex.quote(str(interrupted))}"
    assert hint in stderr.splitlines(), stderr  # #8.19: quoted, and on one line however long
    partial = [path.name for path in checkpoints.list_checkpoints(interrupted) if "_batch_" in path.name]
    assert len(partial) == 1 and partial[0].startswith("epoch_001_batch_"), partial

    result = subprocess.run(cli_command(data_dir, interrupted, "--resume"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "batch" in result.stderr  # it says where it resumed
    expected, actual = parameters(straight), parameters(interrupted)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)


@pytest.mark.slow
@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_during_the_final_evaluation_saves_the_epoch_and_exits_143(
    signals: int, tmp_path: Path, data_dir: Path
) -> None:
    """#8.16: the signal was swallowed (exit 0, "finished"), or waited for the whole evaluation; two signals
    exited 130 without a checkpoint."""
    run_dir = tmp_path / "run"
    command = cli_command(
        data_dir, run_dir, "--epochs", "1", "--max-batches", "10", "--eval-every", "1", "--eval-samples", "50000"
    )  # an evaluation of many seconds
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    wait_for((run_dir / "images", "epoch_0.png"), process)  # drawn just before the evaluation starts
    time.sleep(0.5)
    for _ in range(signals):
        process.send_signal(signal.SIGTERM)
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert not (run_dir / "metrics.jsonl").exists()  # the evaluation was abandoned, not finished first
    assert formats.load(run_dir / "checkpoints" / "epoch_000.pt")["epochs_done"] == 1
    assert "SIGTERM: stopped at epoch 1" in stderr and "Resume with" in stderr
    finished = subprocess.run(cli_command(data_dir, run_dir, "--resume"), capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert (run_dir / "generator.pth").is_file()


class MakesAMarker:
    """A pickle payload that would create a file if it were ever unpickled with full pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_is_refused_and_its_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "generator.pth"
    torch.save({"format": formats.GENERATOR, "payload": MakesAMarker(marker)}, evil)
    for command in (
        ["generate", "--checkpoint", str(evil), "--out", str(tmp_path / "x.png")],
        ["plot-checkpoint", "--checkpoint", str(evil), "--no-show"],
        ["evaluate", "--checkpoint", str(evil)],
    ):
        assert_clean_failure(runner.invoke(app, command), 1, str(evil), "not a readable mnist_gan checkpoint")
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        formats.load(evil)
    assert not marker.exists()
    pickle.loads(pickle.dumps(MakesAMarker(marker)))  # the payload is real: plain pickle does run it
    assert marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"PK\x03\x04truncated zip"])
def test_empty_garbage_and_truncated_files_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        formats.load(path)


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not an mnist_gan checkpoint"):
        formats.load(path)


def test_resume_skips_a_broken_newest_checkpoint(
    tmp_path: Path, data_dir: Path, trained_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="mnist_gan")
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    newest = checkpoints.latest_checkpoint(run_dir)
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a crash during a non-atomic copy
    resume(run_dir, {"epochs": 3, "eval_every": 0})
    warnings = caplog.messages
    assert any("skipping broken checkpoint" in warning and "epoch_001.pt" in warning for warning in warnings)
    assert any("epoch 1, batch 0" in warning for warning in warnings)  # it went back to epoch_000.pt
    assert formats.load(checkpoints.latest_checkpoint(run_dir))["epoch"] == 3


def test_resume_refuses_model_changes_and_logs_safe_ones(
    trained_run: Path, tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="mnist_gan")
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    with pytest.raises(ConfigError, match="arch: checkpoint has 'dcgan', flag says 'mlp'.*latent_dim"):
        resume(run_dir, {"arch": "mlp", "latent_dim": 64, "epochs": 3})
    result = runner.invoke(app, ["main", "--resume", "--run-dir", str(run_dir), "--img-size", "32"])
    assert_clean_failure(result, 2, "cannot resume with a different model or data", "img_size")
    resume(run_dir, {"epochs": 3, "lr": 1e-4, "eval_every": 0, "lr_schedule": "constant"})
    warnings = caplog.messages
    saved_lr = formats.load(trained_run / "generator.pth")["config"]["lr"]
    assert any(f"lr changed from {saved_lr!r} to 0.0001" in warning for warning in warnings)
    payload = formats.load(checkpoints.latest_checkpoint(run_dir))
    assert payload["config"]["lr"] == 1e-4 and payload["optimizer_g"]["param_groups"][0]["lr"] == 1e-4


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = step.train_step

    def step_that_diverges(state, *args, **kwargs):
        stats = real_step(state, *args, **kwargs)
        return {**stats, "loss_g": torch.tensor(float("nan"))} if state.step == 8 else stats  # the 9th step

    monkeypatch.setattr(step, "train_step", step_that_diverges)
    with pytest.raises(TrainingDiverged, match="between step 9 and step 10"):  # read every --log-every 2 steps
        train(quick_config(tmp_path / "run", eval_every=0))
    assert [path.name for path in checkpoints.list_checkpoints(tmp_path / "run")] == ["epoch_000.pt"]


def test_read_only_run_directory(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits; the immutable attribute binds root too
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("chattr +i is not available here")
    else:
        folder.chmod(0o555)
    try:
        result = runner.invoke(app, ["main", "--data-dir", str(data_dir), "--run-dir", str(folder / "run")])
        assert_clean_failure(result, 1, "cannot write to run directory")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True) if os.geteuid() == 0 else folder.chmod(0o755)


def test_keep_last_bounds_the_checkpoints(tmp_path: Path, data_dir: Path) -> None:
    run_dir = train(quick_config(tmp_path / "run", epochs=4, keep_last=2))
    assert [path.name for path in checkpoints.list_checkpoints(run_dir)] == ["epoch_002.pt", "epoch_003.pt"]
    assert (run_dir / "best.pt").is_file() and (run_dir / "generator.pth").is_file()


NUMERIC_FLAGS = {
    "--epochs": int,
    "--batch-size": int,
    "--lr": float,
    "--b1": float,
    "--b2": float,
    "--latent-dim": int,
    "--img-size": int,
    "--channels": int,
    "--width": int,
    "--ema-decay": float,
    "--ema-span": float,
    "--max-batches": int,
    "--sample-interval": int,
    "--log-every": int,
    "--eval-every": int,
    "--eval-samples": int,
    "--keep-last": int,
    "--seed": int,
}
values = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "abc", "1e400", "-0", "0x10", "nan"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sorted(NUMERIC_FLAGS)), values, min_size=1, max_size=4))
def test_numeric_flags_never_give_a_traceback(monkeypatch: pytest.MonkeyPatch, flags: dict) -> None:
    accepted = []
    monkeypatch.setattr(trainer, "train", accepted.append)  # validation only: do not train
    args = ["main"] + [item for flag, value in flags.items() for item in (flag, str(value))]
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    if result.exit_code == 0:
        config = accepted[0]
        assert config.epochs >= 1 and 0 < config.lr < 1 and 0 <= config.b1 < 1 and 0 <= config.b2 < 1
    else:
        assert "Traceback" not in result.output and result.output.strip()
