"""Pictures: sample grids as PNG, a titled matplotlib figure of a checkpoint, and image arrays for other tools."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

from .data import to_uint8
from .errors import OutputError
from .files import atomic_output

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")  # what matplotlib writes, chosen by the name
MAX_GRID_IMAGES = 1024  # a 32 x 32 grid (about 1000 pixels a side for MNIST); more is an array's job


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    """Save images in [-1, 1] as one PNG grid."""
    from torchvision.utils import save_image  # imported on use: torchvision takes a second to import

    nrow = nrow or math.ceil(math.sqrt(len(images)))
    with atomic_output(path) as temporary:
        save_image(images, temporary, nrow=nrow, normalize=True, value_range=(-1, 1), pad_value=1.0)


def grid_array(images: torch.Tensor, nrow: int) -> np.ndarray:
    """A grid as an H x W (x 3) uint8 array for matplotlib."""
    from torchvision.utils import make_grid

    grid = make_grid(images.float(), nrow=nrow, normalize=True, value_range=(-1, 1), pad_value=1.0)
    return grid.mul(255).round().byte().permute(1, 2, 0).numpy()


def display_available() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def plot_samples(images: torch.Tensor, title: str, path: Path, show: bool = False) -> Path:
    """Draw an N x N grid with a title, save it as PNG and show it if asked and a display is available."""
    import matplotlib

    if not (show and display_available()):
        matplotlib.use("Agg")  # headless: render to file only
    import matplotlib.pyplot as plt

    nrow = math.isqrt(len(images))
    figure, axis = plt.subplots(figsize=(6, 6.4))
    axis.imshow(grid_array(images, nrow), cmap="gray", interpolation="nearest")
    axis.set_title(title)
    axis.axis("off")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=100)
    if show and display_available():
        plt.show()
    plt.close(figure)
    return path


def check_grid_size(num_images: int, path: Path) -> None:
    if path.suffix.lower() == ".png" and num_images > MAX_GRID_IMAGES:
        raise OutputError(
            f"a PNG grid holds at most {MAX_GRID_IMAGES:,} images, asked for {num_images:,}; "
            f"write them to an .npz instead (--out {path.with_suffix('.npz')})"
        )


def save_images(images: torch.Tensor, path: Path) -> Path:
    """`.png`: one grid; `.npz`: `images` as uint8 N x H x W (single channel) or N x H x W x C."""
    if path.suffix.lower() == ".npz":
        array = (images if images.dtype == torch.uint8 else to_uint8(images)).permute(0, 2, 3, 1).numpy()
        if array.shape[-1] == 1:
            array = array[..., 0]
        with atomic_output(path) as temporary:
            np.savez_compressed(temporary, images=array)
    else:
        check_grid_size(len(images), path)
        save_grid(images, path)
    return path


def plot_comparison(summaries: list[dict], path: Path) -> Path:
    """FID per epoch and both losses per step for several runs, side by side, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (fid_axis, g_axis, d_axis) = plt.subplots(1, 3, figsize=(16, 4.5))
    for summary in summaries:
        label = Path(summary["run"]).name
        epochs = [record["epoch"] + 1 for record in summary["history"]]
        fid_axis.plot(epochs, [record["fid"] for record in summary["history"]], marker="o", label=label)
        for axis, tag in ((g_axis, "loss/generator"), (d_axis, "loss/discriminator")):
            steps, values = zip(*summary["losses"].get(tag, [(0, float("nan"))]), strict=True)
            axis.plot(steps, smooth(values), label=label)
    fid_axis.set(title="evaluator FID (lower is better)", xlabel="epoch", ylabel="FID", yscale="log")
    g_axis.set(title="generator loss", xlabel="step")
    d_axis.set(title="discriminator loss", xlabel="step")
    for axis in (fid_axis, g_axis, d_axis):
        axis.grid(alpha=0.3)
    fid_axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return path


def smooth(values: tuple[float, ...], weight: float = 0.9) -> list[float]:
    """TensorBoard-style exponential smoothing, so noisy GAN losses show their trend."""
    smoothed, last = [], values[0]
    for value in values:
        last = weight * last + (1 - weight) * value
        smoothed.append(last)
    return smoothed
