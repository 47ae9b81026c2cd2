"""mnist_gan: train GANs on MNIST-like datasets, watch them in TensorBoard, render and measure what they make."""

from __future__ import annotations

import importlib
from typing import Any

from .config import Config
from .errors import MnistGanError

__version__ = "0.1.0"

# The public API, imported on first use: `generate` should not pay for TensorBoard and torchmetrics.
_LAZY = {
    "train": "trainer",
    "resume": "trainer",
    "generate": "sampling",
    "plot_checkpoint": "sampling",
    "sample_images": "sampling",
    "Sampler": "sampling",
    "interpolate": "sampling",
    "build_models": "models",
}

__all__ = ["Config", "MnistGanError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
