"""The run folder under attack: planted symlinks, reused folders, two processes, leftovers of a kill, failed starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import TINY_RUN, assert_clean_failure, cli_command, copy_raw_data, run, wait_for, write_idx
from mnist_gan import checkpoints, formats, resume
from mnist_gan.devices import cpu_has_fast_bf16


def test_planted_probe_symlink_never_truncates_a_file(tmp_path: Path, data_dir: Path) -> None:
    """#8.1: the write probe must not follow a symlink planted where it writes."""
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".write_test").symlink_to(victim)
    result = run("main", "--data-dir", data_dir, "--run-dir", run_dir, *TINY_RUN)
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "keep me"


def test_planted_checkpoints_symlink_is_refused(tmp_path: Path, data_dir: Path) -> None:
    """#8.1: a `checkpoints` link would make training write and prune files elsewhere."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "epoch_000.pt").write_text("not ours")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    result = run("main", "--data-dir", data_dir, "--run-dir", run_dir, *TINY_RUN, "--resume")
    assert_clean_failure(result, 1, "is a symbolic link")
    assert [path.name for path in elsewhere.iterdir()] == ["epoch_000.pt"]
    assert (elsewhere / "epoch_000.pt").read_text() == "not ours"


def test_run_folder_without_checkpoints_is_not_reused(trained_run: Path, tmp_path: Path, data_dir: Path) -> None:
    """#8.2: a run whose checkpoints/ was deleted still holds outputs that a new run would overwrite."""
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    shutil.rmtree(run_dir / "checkpoints")
    before = {name: (run_dir / name).read_bytes() for name in ("generator.pth", "best.pt", "metrics.jsonl")}
    result = run("main", "--data-dir", data_dir, "--run-dir", run_dir, *TINY_RUN)
    assert_clean_failure(result, 1, "already holds a run", "generator.pth", "--resume")
    assert {name: (run_dir / name).read_bytes() for name in before} == before


@pytest.mark.slow
def test_second_process_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path: Path, data_dir: Path) -> None:
    """#8.3: one process per run folder; the lock of a process killed with -9 (no handler runs) does not block the
    next, its complete checkpoints all load, and --resume finishes the run."""
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        cli_command(data_dir, run_dir, "--epochs", "1000", "--max-batches", "20", "--keep-last", "0"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for((run_dir / "checkpoints", "epoch_000.pt"), first)
        second = subprocess.run(cli_command(data_dir, run_dir, "--resume"), capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        assert f"is in use by process {first.pid}" in " ".join(second.stderr.split())
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the holder trains on, undisturbed
        wait_for((run_dir / "checkpoints", "epoch_001.pt"), first)
    finally:
        first.kill()
        first.wait()
    survivors = checkpoints.list_checkpoints(run_dir)
    assert [path.name for path in survivors][:2] == ["epoch_000.pt", "epoch_001.pt"]
    done = max(formats.load(path)["epoch"] for path in survivors)  # every complete checkpoint loads
    third = subprocess.run(cli_command(data_dir, run_dir, "--resume", "--epochs", str(done + 1)),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert third.returncode == 0, third.stderr
    assert formats.load(checkpoints.latest_checkpoint(run_dir))["epoch"] == done + 1


def test_newest_run_is_the_most_recently_modified(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#8.5: `runs/baseline` sorts after timestamps but is older; the default commands must not pick it."""
    baseline = Path(shutil.copytree(trained_run, tmp_path / "runs" / "baseline"))
    recent = Path(shutil.copytree(trained_run, tmp_path / "runs" / "2026-11-01_10-00-00"))
    (tmp_path / "runs" / "notes").mkdir()  # not a run: never chosen
    old = time.time() - 3600
    for path in (baseline, baseline / "checkpoints"):
        os.utime(path, (old, old))
    monkeypatch.chdir(tmp_path)
    result = run("generate", "--out", "x.png")
    assert result.exit_code == 0, result.output
    assert str(Path("runs") / recent.name) in result.output and "baseline" not in result.output
    assert "most recently modified" in " ".join(run("generate", "--help").output.split())


def test_resume_after_a_kill_drops_leftovers_duplicate_metrics_and_events(trained_run: Path, tmp_path: Path) -> None:
    """#8.7: kill -9 after epoch 1's metrics line and events, before its checkpoint: resume must not repeat them."""
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run_dir / "checkpoints" / "epoch_001.pt").unlink()  # the checkpoint the kill prevented
    leftovers = [
        run_dir / "checkpoints" / ".epoch_001.pt.0123456789ab.tmp",  # names of both versions' temporaries
        run_dir / "checkpoints" / ".epoch_001.0123456789ab.tmp.pt",
        run_dir / ".best.0123456789ab.tmp.pt",
    ]
    for path in leftovers:
        path.write_bytes(b"\0" * 1_000_000)
    with open(run_dir / "metrics.jsonl", "a") as file:
        file.write('{"epoch": 1, "step": 12, "fi')  # and a half-written line
    resume(run_dir, {"epochs": 2})
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]
    assert not any(path.exists() for path in leftovers)
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    steps = [event.step for event in events.Scalars("loss/generator")]
    assert steps == sorted(set(steps)) and steps[-1] == 12, steps  # epoch 1's steps once, not twice


@pytest.mark.parametrize(
    "flags, phrase",
    [
        (["--data-dir", "no-such-folder", "--no-download"], "mnist is not in --data-dir"),
        (["--batch-size", "65536"], "larger than the dataset"),
        (["--precision", "bf16"], "bf16"),
    ],
)
def test_a_failed_start_leaves_no_run_folder(
    flags: list[str], phrase: str, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#8.8: an empty runs/<stamp> would become "the newest run" and block every default command."""
    monkeypatch.chdir(tmp_path)
    if "bf16" in flags and cpu_has_fast_bf16():
        pytest.skip("this CPU runs bf16: --precision bf16 does not fail here")
    result = run("main", "--data-dir", data_dir, *TINY_RUN, *flags)
    assert_clean_failure(result, 2 if "bf16" in flags else 1, phrase)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert_clean_failure(run("generate"), 1, "no runs in runs/")


def test_resume_refuses_a_changed_dataset(trained_run: Path, tmp_path: Path, data_dir: Path) -> None:
    """#8.18: a smaller training set used to finish the epoch with zero steps, silently."""
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    trimmed = copy_raw_data(data_dir, tmp_path / "data")
    raw = trimmed / "MNIST" / "raw"
    images = np.fromfile(raw / "train-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.fromfile(raw / "train-labels-idx1-ubyte", dtype=np.uint8, offset=8)
    write_idx(raw / "train-images-idx3-ubyte", images[:1000], 2051)
    write_idx(raw / "train-labels-idx1-ubyte", labels[:1000], 2049)
    result = run("main", "--resume", "--run-dir", run_dir, "--data-dir", trimmed, "--epochs", "3")
    assert_clean_failure(result, 1, "the training data changed since this run started", "1000 images")
    assert checkpoints.latest_checkpoint(run_dir).name == "epoch_001.pt"  # nothing trained, nothing written


def test_bf16_counts_as_slow_where_onednn_is_capped_below_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Emulating an AVX2 laptop on an AMX CPU (ONEDNN_MAX_CPU_ISA=AVX2) makes bf16 matmuls emulated: auto must
    # then pick fp32, as it does on the laptop.
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    has_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    for isa, fast in [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_AMX", has_bf16), ("ALL", has_bf16)]:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        cpu_has_fast_bf16.cache_clear()  # read once per process
        assert cpu_has_fast_bf16() == fast, isa
    monkeypatch.undo()
    cpu_has_fast_bf16.cache_clear()
