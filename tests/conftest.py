"""Shared fixtures: the real datasets from ../shared/data and one short real training run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from helpers import DATA_DIR, quick_config
from mnist_gan import train

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N workers share the cores, so each torch process (a worker, and every run it starts) takes one
    # thread; OpenMP pools of several threads each would oversubscribe the cores and slow every test many-fold.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def private_user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The caches of read-only data go to the user's cache folder: the tests' go to a temporary one."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("user_cache")
        patch.setenv("XDG_CACHE_HOME", str(folder))
        patch.delenv("MNIST_GAN_CACHE_DIR", raising=False)
        yield folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.fail(f"MNIST not found under {DATA_DIR}; set MNIST_GAN_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A finished two-epoch run, shared by the tests that only read its outputs."""
    return train(quick_config(tmp_path_factory.mktemp("runs") / "quick"))
