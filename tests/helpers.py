"""Helpers shared by the test modules: CLI invocation and checks, short real runs, data copies, small disks."""

from __future__ import annotations

import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from mnist_gan import checkpoints, formats
from mnist_gan.__main__ import app
from mnist_gan.config import Config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from shapes import SHAPES, make_shapes_folder  # noqa: E402,F401  (the generated image folder the tests train on)

# Resolved: the tests run the CLI from other folders, and the README passes a relative path.
DATA_DIR = Path(os.environ.get("MNIST_GAN_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
runner = CliRunner()
# A real run of seconds through the CLI: 1 epoch of 2 batches of a narrow DCGAN, no evaluation, no grids.
TINY_RUN = ("--arch", "dcgan", "--width", "8", "--batch-size", "32", "--max-batches", "2", "--epochs", "1",
            "--eval-every", "0", "--sample-interval", "0")  # fmt: skip


def quick_config(run_dir: Path, **overrides) -> Config:
    """A real run on MNIST small enough for seconds on a CPU."""
    values = dict(
        data_dir=str(DATA_DIR),
        run_dir=str(run_dir),
        arch="dcgan",
        epochs=2,
        batch_size=32,
        max_batches=6,
        width=8,
        sample_interval=4,
        log_every=2,
        eval_samples=200,
        seed=1,
        download=False,
    )
    values.update(overrides)
    return Config(**values)


def copy_raw_data(data_dir: Path, destination: Path, dataset: str = "MNIST") -> Path:
    """A writable copy of a dataset's raw files (to damage or trim); returns the new data root."""
    raw = destination / dataset / "raw"
    shutil.copytree(data_dir / dataset / "raw", raw)
    for path in raw.iterdir():
        path.chmod(0o644)  # ../shared is read-only
    return destination


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """An MNIST IDX file: big-endian magic and sizes, then the uint8 data."""
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def run_on_small_disk(folder: Path, size: str, script: str, keep: Path) -> subprocess.CompletedProcess:
    """Run a shell script with a real tmpfs of `size` mounted on `folder`, in a private mount namespace;
    the tmpfs's files are copied to `keep` at the end (the mount vanishes with the namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    folder.mkdir(parents=True, exist_ok=True)
    keep.mkdir(parents=True, exist_ok=True)
    wrapped = (
        f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))} || exit 99\n"
        f"( {script} )\nstatus=$?\ncp -a {shlex.quote(str(folder))}/. {shlex.quote(str(keep))}/\nexit $status"
    )
    namespace = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    result = subprocess.run([*namespace, "sh", "-c", wrapped], capture_output=True, text=True, timeout=300)
    if result.returncode == 99 or "unshare failed" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    return result


def run(*args: str):
    return runner.invoke(app, [str(arg) for arg in args])


def assert_clean_failure(result, code: int, *phrases: str) -> None:
    """Non-zero exit with the message, and no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for phrase in phrases:
        assert printed(phrase, result.output), result.output


def printed(phrase: str, output: str) -> bool:
    """The phrase is in the output however the console wrapped it (a long path can break mid-word, inside a rich
    panel's borders): compared without whitespace and borders."""
    squeezed = re.sub(r"[\s│╭╮╰╯─]", "", output)
    return re.sub(r"\s", "", phrase) in squeezed


def cli_command(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mnist_gan",
        "main",
        "--data-dir",
        str(data_dir),
        "--run-dir",
        str(run_dir),
        "--arch",
        "dcgan",
        "--batch-size",
        "32",
        "--width",
        "8",
        "--eval-every",
        "0",
        "--sample-interval",
        "0",
        "--seed",
        "3",
        *extra,
    ]


def wait_for(path_glob: tuple[Path, str], process: subprocess.Popen, timeout: float = 120) -> None:
    folder, pattern = path_glob
    deadline = time.monotonic() + timeout
    while not list(folder.glob(pattern)):
        assert process.poll() is None, process.stderr.read() if process.stderr else "training ended early"
        assert time.monotonic() < deadline, "timed out waiting for a checkpoint"
        time.sleep(0.05)


def read_events(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return events


def parameters(run_dir: Path) -> dict[str, torch.Tensor]:
    payload = formats.load(checkpoints.latest_checkpoint(run_dir))
    return {
        **{f"g.{k}": v for k, v in payload["generator"].items()},
        **{f"d.{k}": v for k, v in payload["discriminator"].items()},
        **{f"ema.{k}": v for k, v in payload["generator_ema"].items()},
    }


def write_cifar10(root: Path, per_batch: int = 6) -> Path:
    """CIFAR-10's python version: pickled dicts of uint8 rows (R, G, B planes of 32 x 32) and labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{number}" for number in range(1, 6)] + ["test_batch"]:
        labels = [int(label) for label in rng.integers(0, 10, per_batch)]
        data = np.stack([np.full(3 * 32 * 32, 20 * label, dtype=np.uint8) for label in labels])
        data[:, 1024:2048] = 7  # the green plane
        (folder / name).write_bytes(pickle.dumps({"batch_label": name, "data": data, "labels": labels}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class {n}" for n in range(10)]}))
    return root


def write_celeba(root: Path, count: int = 6) -> Path:
    """CelebA's aligned layout: JPEG faces (here flat colours, 178 x 218) and the five list files, the first
    four images in the train split and the rest in test."""
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{number:06d}.jpg" for number in range(1, count + 1)]
    for number, name in enumerate(names):
        Image.new("RGB", (178, 218), (40 * number, 100, 200)).save(base / "img_align_celeba" / name)
    rows = lambda values: "".join(f"{name} {values}\n" for name in names)  # noqa: E731
    (base / "list_eval_partition.txt").write_text("".join(f"{n} {0 if i < 4 else 2}\n" for i, n in enumerate(names)))
    (base / "identity_CelebA.txt").write_text(rows("1"))
    (base / "list_attr_celeba.txt").write_text(f"{count}\nSmiling Male\n" + rows("1 -1"))
    (base / "list_bbox_celeba.txt").write_text(f"{count}\nimage_id x_1 y_1 width height\n" + rows("1 2 3 4"))
    landmarks = (
        "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    )
    (base / "list_landmarks_align_celeba.txt").write_text(f"{count}\n{landmarks}\n" + rows(" ".join(["5"] * 10)))
    return root


class RunsCode:
    """Pickled, it runs a shell command when loaded: the command creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def forbidden(what: str):
    """A stand-in for a function that must not be called: proof that something was refused before any work."""

    def fail(*args, **kwargs):
        raise AssertionError(f"{what}, although the input should have been refused first")

    return fail
