"""Pictures: sample grids as PNG, a titled matplotlib figure of a checkpoint, and image arrays for other tools."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data import to_uint8
from .errors import MnistGanError, OutputError
from .files import atomic_output, describe
from .runs import IMAGES_DIR, epoch_grids

if TYPE_CHECKING:
    from PIL import Image

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")  # what matplotlib writes, chosen by the name
MAX_GRID_IMAGES = 1024  # a 32 x 32 grid (about 1000 pixels a side for MNIST); more is an array's job


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    """Save images in [-1, 1] as one PNG grid."""
    from PIL import Image

    grid = grid_array(images, nrow or math.ceil(math.sqrt(len(images))))
    with atomic_output(path) as temporary:
        Image.fromarray(grid).save(temporary, format="PNG")


def grid_array(images: torch.Tensor, nrow: int, padding: int = 2) -> np.ndarray:
    """Images in [-1, 1] tiled nrow a row on white, as an H x W x 3 uint8 array: torchvision's make_grid layout,
    written here because importing torchvision costs a process about 2.5 s (benchmarks/RESULTS.md, section 13)."""
    pixels = to_uint8(images).expand(-1, 3, -1, -1)  # grey images drawn as RGB, as make_grid does
    columns = min(nrow, len(images))
    rows = math.ceil(len(images) / columns)
    height, width = pixels.shape[-2] + padding, pixels.shape[-1] + padding
    grid = torch.full((3, rows * height + padding, columns * width + padding), 255, dtype=torch.uint8)
    for index, image in enumerate(pixels):
        top, left = index // columns * height + padding, index % columns * width + padding
        grid[:, top : top + image.shape[-2], left : left + image.shape[-1]] = image
    return grid.permute(1, 2, 0).numpy()


def display_available() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def plot_samples(
    images: torch.Tensor,
    title: str,
    path: Path,
    show: bool = False,
    row_labels: list[str] | None = None,
) -> Path:
    """Draw the images as a square grid (or one row per label in row_labels) with a title, save the figure and
    show it if asked and a display is available."""
    import matplotlib

    if not (show and display_available()):
        matplotlib.use("Agg")  # headless: render to file only
    import matplotlib.pyplot as plt

    nrow = len(images) // len(row_labels) if row_labels else math.isqrt(len(images))
    grid = grid_array(images, nrow)
    figure, axis = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
    axis.imshow(grid, cmap="gray", interpolation="nearest")
    axis.set_title(title)
    axis.set_xticks([])
    axis.set_yticks([])
    for side in axis.spines.values():
        side.set_visible(False)
    if row_labels:  # the class of each row, at its middle
        row_height = grid.shape[0] / len(row_labels)
        axis.set_yticks([row_height * (row + 0.5) for row in range(len(row_labels))], row_labels)
        axis.tick_params(left=False)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=100)
    if show and display_available():
        plt.show()
    plt.close(figure)
    return path


def save_gif(frames: list[np.ndarray], path: Path, frame_ms: int = 100, last_frame_ms: int | None = None) -> Path:
    """An animated GIF that loops forever, from H x W (x 3) uint8 frames; the last may stay longer."""
    from PIL import Image

    pictures = [Image.fromarray(frame) for frame in frames]
    durations = [frame_ms] * len(frames)
    durations[-1] = last_frame_ms or frame_ms
    with atomic_output(path) as temporary:  # Pillow picks the format from the name, so it is given here
        pictures[0].save(temporary, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return path


def upscaled(images: torch.Tensor, min_side: int = 112) -> torch.Tensor:
    """Images enlarged by a whole factor (nearest pixel) to at least min_side: 28-pixel digits are tiny in a GIF."""
    factor = max(1, -(-min_side // images.shape[-1]))
    return images.repeat_interleave(factor, -1).repeat_interleave(factor, -2)


def check_grid_size(num_images: int, path: Path) -> None:
    if path.suffix.lower() == ".png" and num_images > MAX_GRID_IMAGES:
        raise OutputError(
            f"a PNG grid holds at most {MAX_GRID_IMAGES:,} images, asked for {num_images:,}; "
            f"write them to an .npz instead (--out {path.with_suffix('.npz')})"
        )


def save_images(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """`.png`: one grid (nrow images a row; default square); `.npz`: `images` as uint8 N x H x W (single channel)
    or N x H x W x C."""
    if path.suffix.lower() == ".npz":
        array = (images if images.dtype == torch.uint8 else to_uint8(images)).permute(0, 2, 3, 1).numpy()
        if array.shape[-1] == 1:
            array = array[..., 0]
        with atomic_output(path) as temporary:
            write_npz(temporary, array)
    else:
        check_grid_size(len(images), path)
        save_grid(images, path, nrow)
    return path


def write_npz(path: Path, images: np.ndarray) -> None:
    """np.savez's file, `images` stored uncompressed, as evaluation suites such as ADM's keep their samples: writing
    it is a small part of generate's time, where deflating it was not (benchmarks/RESULTS.md, section 11)."""
    with open(path, "wb") as file:  # a file object: np.savez would append .npz to a name ending in .NPZ
        np.savez(file, images=images)


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


def animate_run(run_dir: Path, out: Path, frame_ms: int = 200) -> int:
    """A run's per-epoch grids (images/epoch_N.png, N from 0), in order, as one looping GIF, each frame captioned
    with its epoch and the last held for 2 s; returns the number of frames."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(run_dir) / IMAGES_DIR
    grids = epoch_grids(run_dir)
    if not grids:
        raise MnistGanError(f"{folder} holds no epoch grids (epoch_N.png): is {run_dir} a run that finished an epoch?")
    frames = []
    for epoch, path in grids:
        try:
            with Image.open(path) as grid:
                frames.append(captioned(grid.convert("RGB"), f"epoch {epoch + 1}"))
        except (OSError, UnidentifiedImageError) as error:
            raise MnistGanError(f"cannot read {path}: {describe(error)}") from None
    save_gif(frames, out, frame_ms=frame_ms, last_frame_ms=2000)
    return len(frames)


def captioned(picture: Image.Image, caption: str) -> np.ndarray:
    """The picture under a white band with the caption, as an array."""
    from PIL import Image, ImageDraw

    band = 16
    framed = Image.new("RGB", (picture.width, picture.height + band), "white")
    framed.paste(picture, (0, band))
    ImageDraw.Draw(framed).text((4, 2), caption, fill="black")
    return np.asarray(framed)
