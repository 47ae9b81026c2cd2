"""Outputs: checked before the work starts, written whole or not at all, on real full and read-only disks."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import DATA_DIR, assert_clean_failure, forbidden, printed, run, run_on_small_disk
from mnist_gan import checkpoints, formats, plots, sampling, scoring

CLI = f"{shlex.quote(sys.executable)} -m mnist_gan"


@pytest.mark.slow
def test_every_output_is_replaced_whole_on_a_full_disk(trained_run: Path, tmp_path: Path) -> None:
    """#8.4: on a real full tmpfs, generate, plot-checkpoint, compare and evaluate --json fail cleanly and
    leave the earlier file intact (no truncated file, no temporary)."""
    disk, kept, good = tmp_path / "disk", tmp_path / "kept", tmp_path / "good"
    generator = trained_run / "generator.pth"
    small = {
        "x.npz": ["generate", "--checkpoint", generator, "--num-images", "4", "--out"],
        "plot.png": ["plot-checkpoint", "--checkpoint", generator, "--grid", "2", "--no-show", "--out"],
        "comparison.png": ["compare", trained_run, "--out"],
        "result.json": ["evaluate", "--checkpoint", generator, "--num-images", "100", "--data-dir", DATA_DIR, "--json"],
    }
    for name, args in small.items():  # the good files, made in this process (fast)
        assert run(*args, good / name).exit_code == 0
    big = {
        "x.npz": ["generate", "--checkpoint", generator, "--num-images", "1000", "--out"],
        "plot.png": ["plot-checkpoint", "--checkpoint", generator, "--grid", "8", "--no-show", "--out"],
        "comparison.png": ["compare", trained_run, trained_run, "--out"],
        "result.json": ["evaluate", "--checkpoint", generator, "--num-images", "100", "--data-dir", DATA_DIR, "--json"],
    }
    # One Python process runs the four commands (through the CLI's own entry, in-process): one torch import.
    commands = [[str(arg) for arg in args] + [str(disk / name)] for name, args in big.items()]
    program = (
        "import json, sys; from typer.testing import CliRunner; from mnist_gan.__main__ import app\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    print(json.dumps([result.exit_code, result.output, repr(result.exception)]))"
    )
    script = [
        f"cp {q(good)}/* {q(disk)}/",
        f"head -c 50000000 /dev/zero > {q(disk / 'filler')} 2>/dev/null",
        f"{q(Path(sys.executable))} -c {shlex.quote(program)} {shlex.quote(json.dumps(commands))}",
    ]
    result = run_on_small_disk(disk, "1m", "\n".join(script), kept)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        code, output, exception = json.loads(line)
        assert code == 1 and "the disk is full; nothing was overwritten" in " ".join(output.split()), output
        assert exception.startswith("SystemExit"), exception
    assert len(result.stdout.splitlines()) == len(big)
    for name in big:
        assert (kept / name).read_bytes() == (good / name).read_bytes(), name
    assert not [path.name for path in kept.iterdir() if ".tmp" in path.name]


def q(path: Path) -> str:
    return shlex.quote(str(path))


@pytest.mark.slow
def test_a_real_full_disk_stops_training_cleanly_with_a_resumable_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    """#8.6: ENOSPC inside torch.save surfaced as RuntimeError("unexpected pos") and a traceback."""
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    command = (
        f"{CLI} main --data-dir {shlex.quote(str(data_dir))} --run-dir {shlex.quote(str(disk / 'run'))} "
        f"--arch dcgan --width 8 --batch-size 32 --max-batches 3 --epochs 6 --eval-every 0 --keep-last 0"
    )
    result = run_on_small_disk(disk, "6m", f"{command}", kept)  # a checkpoint is 2.7 MB: two fit, not three
    assert result.returncode == 1, result.stderr
    message = " ".join(result.stderr.split())
    assert "the disk is full" in message and "Traceback" not in message, message
    saved = checkpoints.list_checkpoints(kept / "run")
    assert saved, "no checkpoint survived"
    payload = formats.load(saved[-1])  # the newest checkpoint is whole and resumable
    assert payload["epoch"] == len(saved)
    assert not [path for path in (kept / "run").rglob("*") if ".tmp" in path.name]


FULL_EVENT_FILE = """
import sys
from pathlib import Path
import torch
from mnist_gan.config import Config
from mnist_gan.reporting import Reporter
run_dir = Path(sys.argv[1])
reporter = Reporter(run_dir, Config(), steps_per_epoch=1, precision=torch.float32)
reporter.writer.flush()
events = next(run_dir.glob("events.out.tfevents.*"))
events.unlink()
events.symlink_to("/dev/full")  # TensorBoard opens the file again for every write: this one fails in its thread
reporter.writer.add_scalar("loss/generator", 1.0, 0)
try:
    reporter.writer.flush()
except OSError:
    print("raised in the main thread")
reporter.close()
"""


def test_a_full_disk_under_tensorboards_writer_thread_prints_no_traceback(tmp_path: Path) -> None:
    """The 6 MB tmpfs above fills at a different write each run; when TensorBoard's own thread hit it first, its
    traceback reached the user. /dev/full fails that write every time (in a subprocess: pytest hooks threads)."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    result = subprocess.run([sys.executable, "-c", FULL_EVENT_FILE, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0 and "raised in the main thread" in result.stdout, result.stderr
    assert "Traceback" not in result.stderr and "the disk is full" in result.stderr, result.stderr


@pytest.fixture
def immutable(tmp_path: Path):
    """Make a path read-only in a way that binds root too (chattr +i), or chmod for other users."""
    made: list[Path] = []

    def make(path: Path) -> Path:
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
                pytest.skip("chattr +i is not available here")
        else:
            path.chmod(0o444)
        made.append(path)
        return path

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True) if os.geteuid() == 0 else path.chmod(0o644)


def test_output_paths_are_checked_before_any_work(
    trained_run: Path, tmp_path: Path, immutable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#8.12 and #8.19: bad output paths fail at once with exit 2, before sampling, training or scoring."""
    generator = trained_run / "generator.pth"
    folder = tmp_path / "a-folder"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    locked = tmp_path / "locked.png"
    locked.write_bytes(b"old")
    immutable(locked)
    cases = [
        (["generate", "--checkpoint", generator, "--out", folder], "must end in .png or .npz"),
        (["generate", "--checkpoint", generator, "--out", tmp_path / "dir.png"], None),  # made below as a folder
        (["generate", "--checkpoint", generator, "--out", a_file / "x.png"], "a-file is a file, not a folder"),
        (["generate", "--checkpoint", generator, "--out", locked], "is read-only"),
        (["generate", "--checkpoint", generator, "--out", tmp_path / "g" / "noext"], "must end in .png or .npz"),
        (
            ["plot-checkpoint", "--checkpoint", generator, "--no-show", "--out", tmp_path / "x.jpg"],
            "must end in .png or .pdf or .svg",
        ),
        (["compare", trained_run, "--out", tmp_path / "x.txt"], "must end in .png or .pdf or .svg"),
        (["compare", trained_run, "--markdown", a_file / "t.md"], "is a file, not a folder"),
        (["evaluate", "--checkpoint", generator, "--json", folder], "must end in .json"),
        (["evaluate", "--checkpoint", generator, "--json", a_file / "r.json"], "is a file, not a folder"),
        (["train-evaluator", "--data-dir", DATA_DIR, "--epochs", "1", "--out", folder], "must end in .pt"),
        (["train-evaluator", "--data-dir", DATA_DIR, "--epochs", "1", "--out", a_file / "e.pt"], "is a file"),
    ]
    (tmp_path / "dir.png").mkdir()
    cases[1] = (cases[1][0], "is a folder")
    for name in ("build_evaluator", "evaluate", "compare_runs"):  # refused before any work: none of it starts
        monkeypatch.setattr(scoring, name, forbidden(f"{name} started"))
    monkeypatch.setattr(checkpoints, "resolve_source", forbidden("a checkpoint was looked for"))
    monkeypatch.setattr(plots, "animate_run", forbidden("the animation started"))
    for args, phrase in cases:
        assert_clean_failure(run(*args), 2, phrase)
    assert locked.read_bytes() == b"old"
    assert not (tmp_path / "g").exists()


def test_missing_parents_of_outputs_are_created(trained_run: Path, tmp_path: Path) -> None:
    """#8.12: --markdown into a folder that does not exist yet used to crash after the work was done."""
    markdown = tmp_path / "new" / "folder" / "table.md"
    result = run("compare", trained_run, "--out", tmp_path / "other" / "c.png", "--markdown", markdown)
    assert result.exit_code == 0, result.output
    assert markdown.read_text().startswith("| run |") and (tmp_path / "other" / "c.png").is_file()


def test_huge_png_grids_are_refused_and_npz_arrays_are_made_in_uint8(trained_run: Path, tmp_path: Path) -> None:
    """#8.17: 100,000 images to a PNG made a 3.4 GB, 9512-pixel image."""
    generator = trained_run / "generator.pth"
    with pytest.MonkeyPatch.context() as patch:  # refused before the generator is even loaded
        patch.setattr(sampling.Sampler, "load", forbidden("the generator was loaded"))
        assert_clean_failure(
            run("generate", "--checkpoint", generator, "--num-images", "100000", "--out", tmp_path / "x.png"),
            1,
            "a PNG grid holds at most 1,024 images",
            "x.npz",
        )
    assert not (tmp_path / "x.png").exists()
    result = run("generate", "--checkpoint", generator, "--num-images", "3000", "--out", tmp_path / "x.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "x.npz") as archive:
        assert archive["images"].shape == (3000, 28, 28) and archive["images"].dtype == np.uint8
    with zipfile.ZipFile(tmp_path / "x.npz") as archive:  # np.savez's layout, stored: quick to write and to read
        assert [(member.filename, member.compress_type) for member in archive.infolist()] == [
            ("images.npy", zipfile.ZIP_STORED)
        ]
    result = run("generate", "--checkpoint", generator, "--num-images", "5", "--out", tmp_path / "upper.NPZ")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["upper.NPZ", "x.npz"]


def test_generate_says_the_file_it_wrote(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "grid.png"
    result = run("generate", "--checkpoint", trained_run / "generator.pth", "--out", out)
    assert result.exit_code == 0, result.output
    assert printed(str(out), result.output) and out.is_file()
