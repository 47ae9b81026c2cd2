"""Shared fixtures: the real datasets from ../shared/data and one short real training run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mnist_gan import Config, train

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MNIST_GAN_DATA_DIR", ROOT.parent / "shared" / "data"))


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
