"""Shared fixtures: the real datasets from ../shared/data and one short real training run."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mnist_gan import Config, train

ROOT = Path(__file__).resolve().parents[1]
# Resolved: the tests run the CLI from other folders, and the README passes a relative path.
DATA_DIR = Path(os.environ.get("MNIST_GAN_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


def quick_config(run_dir: Path, **overrides) -> Config:
    """A real run on MNIST small enough for seconds on a CPU."""
    values = dict(data_dir=str(DATA_DIR), run_dir=str(run_dir), arch="dcgan", epochs=2, batch_size=32, max_batches=6, width=8,
                  sample_interval=4, log_every=2, eval_samples=200, seed=1, download=False)
    values.update(overrides)
    return Config(**values)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.fail(f"MNIST not found under {DATA_DIR}; set MNIST_GAN_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A finished two-epoch run, shared by the tests that only read its outputs."""
    return train(quick_config(tmp_path_factory.mktemp("runs") / "quick"))


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
    wrapped = (f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))} || exit 99\n"
               f"( {script} )\nstatus=$?\ncp -a {shlex.quote(str(folder))}/. {shlex.quote(str(keep))}/\nexit $status")
    namespace = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    result = subprocess.run([*namespace, "sh", "-c", wrapped], capture_output=True, text=True, timeout=300)
    if result.returncode == 99 or "unshare failed" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    return result
