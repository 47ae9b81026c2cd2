"""Draw images from a trained generator: the library side of `generate` and `plot-checkpoint`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import checkpoints
from .data import to_uint8
from .devices import resolve_device
from .files import check_output
from .models import eval_mode
from .plots import FIGURE_SUFFIXES, check_grid_size, plot_samples, save_images


@torch.no_grad()
def sample_images(
    generator: nn.Module,
    num_images: int,
    latent_dim: int,
    *,
    seed: int = 0,
    batch_size: int = 1000,
    as_uint8: bool = False,
) -> torch.Tensor:
    """num_images samples in [-1, 1] (or uint8, a quarter of the memory) on the CPU, in eval mode; the same seed
    gives the same images."""
    device = next(generator.parameters()).device
    noise_rng = torch.Generator().manual_seed(seed)
    z = torch.randn(num_images, latent_dim, generator=noise_rng)
    convert = to_uint8 if as_uint8 else torch.Tensor.float
    with eval_mode(generator):
        chunks = [convert(generator(z[i : i + batch_size].to(device))).cpu() for i in range(0, num_images, batch_size)]
    return torch.cat(chunks)


def generate(source: Path, out: Path, num_images: int = 8, seed: int = 0, device: str = "auto") -> Path:
    """Write num_images samples from a checkpoint or generator.pth to a .png grid or an .npz array."""
    check_grid_size(num_images, out)
    generator, config, _ = checkpoints.load_generator(source, resolve_device(device))
    images = sample_images(generator, num_images, config.latent_dim, seed=seed, as_uint8=out.suffix.lower() == ".npz")
    return save_images(images, out)


def plot_checkpoint(
    source: Path, out: Path | None = None, grid: int = 8, seed: int = 0, show: bool = True, device: str = "auto"
) -> Path:
    """A grid x grid figure of samples titled with the checkpoint's epoch; saved as PNG (beside the checkpoint by default)."""
    out = check_output(out or source.parent / f"{source.stem}_samples.png", FIGURE_SUFFIXES)
    generator, config, epochs_done = checkpoints.load_generator(source, resolve_device(device))
    images = sample_images(generator, grid * grid, config.latent_dim, seed=seed)
    title = f"{config.arch} on {config.dataset} after {epochs_done} epoch{'s' if epochs_done != 1 else ''}"
    return plot_samples(images, title, out, show=show)
