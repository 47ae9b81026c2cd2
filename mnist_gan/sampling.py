"""Draw images from a trained generator: the Python API (`Sampler`) that `generate`, `plot-checkpoint` and
`interpolate` use, so the CLI and a notebook draw the same images for the same seed."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import checkpoints
from .config import LIMITS, Config
from .data import to_uint8
from .devices import resolve_device
from .errors import ConfigError
from .files import check_output
from .models import eval_mode
from .plots import FIGURE_SUFFIXES, check_grid_size, plot_samples, save_gif, save_images, upscaled

if TYPE_CHECKING:
    from PIL import Image

Labels = int | Sequence[int] | torch.Tensor | None  # what Sampler takes as labels
MAX_IMAGES = 1_000_000  # images one call draws at most (28 x 28 floats: 3 GB; colour 64 x 64: 49 GB)
MAX_WALK_STEPS = 256


def check_whole(value: object, name: str, low: int, high: int) -> None:
    """A whole number (not a bool, not a float) from low to high, checked before anything is allocated."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low:,} to {high:,}, got {value!r}", name)


def class_indices(labels: object, name: str) -> list[int]:
    """An int, or a flat sequence (list, tuple, range, 1-D integer tensor or array) of ints, as a list."""
    if isinstance(labels, torch.Tensor):
        values = labels.tolist() if labels.dim() <= 1 and not labels.is_floating_point() else None
    elif isinstance(labels, (numbers.Integral, Sequence)) and not isinstance(labels, (str, bytes)):
        values = [labels] if isinstance(labels, numbers.Integral) else list(labels)
    else:
        values = list(labels) if hasattr(labels, "__array__") and getattr(labels, "ndim", 0) == 1 else None
    values = [values] if isinstance(values, int) else values
    if not values or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise ConfigError(
            f"{name}: expected a class index or a flat sequence of class indices, got {labels!r:.80}", name
        )
    return [int(v) for v in values]


def noise(num_images: int, latent_dim: int, seed: int) -> torch.Tensor:
    """The generator's input for a seed, on the CPU: image i of a seed is the same whatever num_images is."""
    return torch.randn(num_images, latent_dim, generator=torch.Generator().manual_seed(seed))


def class_cycle(num_images: int, num_classes: int) -> torch.Tensor | None:
    """0, 1, ..., K-1, 0, 1, ...: every class in equal share (None for an unconditional generator)."""
    return torch.arange(num_images) % num_classes if num_classes else None


def classes_of(generator: nn.Module) -> int:
    """How many classes a generator draws on request; 0 when it is unconditional."""
    return getattr(generator, "num_classes", 0)


@torch.no_grad()
def draw(
    generator: nn.Module,
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    batch_size: int = 1000,
    as_uint8: bool = False,
) -> torch.Tensor:
    """G(z, labels) in eval mode, in chunks, on the CPU: floats in [-1, 1], or uint8 (a quarter of the memory).
    labels: class indices (N,) or class weights (N, K) for a conditional generator; None draws its classes in turn."""
    device = next(generator.parameters()).device
    labels = labels if labels is not None else class_cycle(len(z), classes_of(generator))
    convert = to_uint8 if as_uint8 else torch.Tensor.float
    chunks = []
    with eval_mode(generator):
        for start in range(0, len(z), batch_size):
            inputs = [z[start : start + batch_size].to(device)]
            if labels is not None:  # an unconditional generator is called with z alone, as any nn.Module G takes it
                inputs.append(labels[start : start + batch_size].to(device))
            chunks.append(convert(generator(*inputs)).cpu())
    return torch.cat(chunks)


def sample_images(
    generator: nn.Module,
    num_images: int,
    latent_dim: int,
    *,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    as_uint8: bool = False,
) -> torch.Tensor:
    """num_images samples for a seed (see draw); the same seed gives the same images."""
    return draw(generator, noise(num_images, latent_dim, seed), labels, as_uint8=as_uint8)


def scoring_sample(
    generator: nn.Module, num_images: int, latent_dim: int, seed: int, shares: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images the metrics score, and the labels they were drawn for: a conditional generator draws every
    class in equal share, or in `shares` when given (None for an unconditional one)."""
    classes = classes_of(generator)
    if classes and shares is not None:
        labels = labels_in_shares(num_images, shares)
    else:
        labels = class_cycle(num_images, classes)
    return sample_images(generator, num_images, latent_dim, seed=seed, labels=labels), labels


def labels_in_shares(num_images: int, shares: torch.Tensor) -> torch.Tensor:
    """num_images labels, class k about shares[k] of them (largest remainders decide the rounding)."""
    exact = shares.double() / shares.sum() * num_images
    counts = exact.floor().long()
    counts[torch.argsort(exact - counts, descending=True)[: num_images - int(counts.sum())]] += 1
    return torch.repeat_interleave(torch.arange(len(shares)), counts)


def slerp(start: torch.Tensor, end: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise vectors (Shoemake 1985; White 2016 for GAN latents), one row per
    weight in [0, 1]. Gaussian noise lives near a sphere: the straight line between two points cuts inside it,
    where the generator saw no inputs. Weights 0 and 1 give start and end exactly."""
    angle = torch.acos(torch.dot(start / start.norm(), end / end.norm()).clamp(-1, 1))
    weights = weights.view(-1, 1)
    if angle < 1e-6:  # (nearly) the same direction: the arc is a line
        return torch.lerp(start, end, weights)
    # the coefficients first: at weight 0 they are exactly 1 and 0, so the ends come out bit for bit
    return (
        torch.sin((1 - weights) * angle) / torch.sin(angle) * start
        + torch.sin(weights * angle) / torch.sin(angle) * end
    )


def walk_weights(steps: int) -> torch.Tensor:
    """steps weights from 0 to 1, both ends included."""
    return torch.linspace(0, 1, steps)


def joined_walks(walks: list[torch.Tensor]) -> torch.Tensor:
    """Consecutive walks as one, each shared end once."""
    return torch.cat([walks[0], *(walk[1:] for walk in walks[1:])])


class Sampler:
    """A trained generator, ready to draw from in a script or notebook.

    >>> from mnist_gan import Sampler
    >>> sampler = Sampler.load("runs/2026-11-22_06-00-00/generator.pth")  # or any checkpoint .pt
    >>> images = sampler.sample(16, seed=1)  # (16, C, H, W) floats in [-1, 1]
    >>> sevens = sampler.pil_images(20, labels=7)  # a run trained with --conditional: twenty 7s, as PIL images

    The same seed (and labels) gives the same images as `python -m mnist_gan generate --seed ...`.
    """

    def __init__(self, generator: nn.Module, config: Config, epochs_done: int = 0) -> None:
        self.generator, self.config, self.epochs_done = generator.eval(), config, epochs_done

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Sampler:
        """From a generator.pth or a checkpoint (its EMA generator when it has one); device auto: cuda, mps, cpu."""
        generator, config, epochs_done = checkpoints.load_generator(Path(path), resolve_device(device))
        return cls(generator, config, epochs_done)

    @property
    def num_classes(self) -> int:
        """Classes the generator draws on request; 0 for an unconditional generator."""
        return classes_of(self.generator)

    def labels(self, num_images: int, labels: Labels = None, name: str = "labels") -> torch.Tensor | None:
        """One class per image: an int for all, a sequence of ints repeated in turn, None (every class in turn), or
        a float tensor (num_images, K) of class weights. Anything else is refused, never coerced; `name` is the
        argument the errors name."""
        if labels is None:
            return class_cycle(num_images, self.num_classes)
        if isinstance(labels, torch.Tensor) and labels.is_floating_point() and self.num_classes:
            return self.class_weights(num_images, labels, name)
        wanted = self.chosen_classes(labels, name)
        return wanted.repeat(math.ceil(num_images / wanted.numel()))[:num_images]

    def chosen_classes(self, classes: Labels, name: str) -> torch.Tensor:
        """The classes asked for, as given (a 1-D tensor), each checked to be one the generator draws."""
        if not self.num_classes:
            raise ConfigError(
                "this generator is unconditional: it cannot draw a chosen class (train one with `main --conditional`)",
                name,
            )
        wanted = class_indices(classes, name)
        outside = [label for label in wanted if not 0 <= label < self.num_classes]  # before torch: 2**70 overflows
        if outside:
            raise ConfigError(
                f"label {outside[0]} is out of range: this generator draws classes 0 to {self.num_classes - 1}", name
            )
        return torch.tensor(wanted, dtype=torch.long)

    def class_weights(self, num_images: int, weights: torch.Tensor, name: str) -> torch.Tensor:
        expected = (num_images, self.num_classes)
        if tuple(weights.shape) != expected or not (torch.isfinite(weights).all() and (weights >= 0).all()):
            raise ConfigError(
                f"class weights must be a tensor of shape {expected} of finite values >= 0, got shape "
                f"{tuple(weights.shape)}",
                name,
            )
        return weights.float()

    def sample(self, num_images: int, seed: int = 0, labels: Labels = None, as_uint8: bool = False) -> torch.Tensor:
        """num_images images (N, C, H, W) on the CPU: floats in [-1, 1], or uint8 0..255."""
        check_whole(num_images, "num_images", 1, MAX_IMAGES)
        check_whole(seed, "seed", *LIMITS["seed"])
        wanted = self.labels(num_images, labels)
        return draw(self.generator, noise(num_images, self.config.latent_dim, seed), wanted, as_uint8=as_uint8)

    def pil_images(self, num_images: int, seed: int = 0, labels: Labels = None) -> list[Image.Image]:
        """The same images as sample(), as PIL images (mode L or RGB)."""
        from PIL import Image

        pixels = self.sample(num_images, seed, labels, as_uint8=True).permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image) for image in pixels]

    def per_class(self, per_class: int, seed: int = 0, classes: Sequence[int] | None = None) -> torch.Tensor:
        """per_class images of each class, class by class (a grid with per_class columns has one row per class); row
        r uses the same noise as every other row, so the columns show one style drawn as each class."""
        if not self.num_classes:
            raise ConfigError("this generator is unconditional: it has no classes to draw a row of", "per_class")
        wanted = torch.arange(self.num_classes) if classes is None else self.chosen_classes(classes, "classes")
        check_whole(per_class, "per_class", 1, MAX_IMAGES // len(wanted))
        check_whole(seed, "seed", *LIMITS["seed"])
        z = noise(per_class, self.config.latent_dim, seed).repeat(len(wanted), 1)
        return draw(self.generator, z, wanted.repeat_interleave(per_class))

    def interpolate(self, seeds: Sequence[int], steps: int = 8, label: int | None = None) -> torch.Tensor:
        """A latent walk through the noise of each seed in turn, steps images from one seed to the next (the
        shared ends once): its first and last images are sample(1, seed) of the first and last seed."""
        if len(seeds) < 2:
            raise ConfigError("a walk needs at least 2 seeds", "seeds")
        for seed in seeds:
            check_whole(seed, "seeds", *LIMITS["seed"])
        check_whole(steps, "steps", 2, MAX_WALK_STEPS)
        ends = torch.cat([noise(1, self.config.latent_dim, seed) for seed in seeds])
        z = joined_walks([slerp(a, b, walk_weights(steps)) for a, b in pairwise(ends)])
        labels = None
        if label is not None or self.num_classes:  # a conditional walk keeps one class: 0 unless asked
            labels = self.labels(len(z), 0 if label is None else label, "label")
        return draw(self.generator, z, labels)

    def class_walk(self, classes: Sequence[int], steps: int = 8, seed: int = 0) -> torch.Tensor:
        """One noise vector drawn as a morph from each class to the next (class weights mixed linearly): its
        first and last images are sample(1, seed, label) of the first and last class."""
        wanted = self.chosen_classes(classes, "classes")
        if len(wanted) < 2:
            raise ConfigError("a class walk needs at least 2 classes", "classes")
        check_whole(steps, "steps", 2, MAX_WALK_STEPS)
        check_whole(seed, "seed", *LIMITS["seed"])
        one_hot = torch.nn.functional.one_hot(wanted, self.num_classes).float()
        weights = walk_weights(steps).view(-1, 1)
        mixes = joined_walks([torch.lerp(a, b, weights) for a, b in pairwise(one_hot)])
        z = noise(1, self.config.latent_dim, seed).repeat(len(mixes), 1)
        return draw(self.generator, z, mixes)


# ----------------------------------------------------------------------------------- the CLI's commands
def generate(
    source: Path,
    out: Path,
    num_images: int = 8,
    seed: int = 0,
    device: str = "auto",
    labels: Labels = None,
    per_class: int = 0,
) -> Path:
    """Samples from a checkpoint or generator.pth to a .png grid or an .npz array: num_images (of the given labels,
    in turn), or per_class of each class (of the labels given, else all), one row per class."""
    if not per_class:
        check_grid_size(num_images, out)
    sampler = Sampler.load(source, device)
    if per_class:
        rows = len(sampler.chosen_classes(labels, "classes")) if labels is not None else max(sampler.num_classes, 1)
        check_grid_size(per_class * rows, out)
        images = sampler.per_class(per_class, seed, labels)
        return save_images(images, out, nrow=per_class)
    return save_images(sampler.sample(num_images, seed, labels, as_uint8=out.suffix.lower() == ".npz"), out)


def plot_checkpoint(
    source: Path, out: Path | None = None, grid: int = 8, seed: int = 0, show: bool = True, device: str = "auto"
) -> Path:
    """A titled figure of samples, saved beside the checkpoint by default: grid x grid images, or for a conditional
    generator one row of grid images per class (the same noise in each column)."""
    out = check_output(out or source.parent / f"{source.stem}_samples.png", FIGURE_SUFFIXES)
    sampler = Sampler.load(source, device)
    config, epochs = sampler.config, sampler.epochs_done
    title = f"{config.arch} on {config.dataset} after {epochs} epoch{'s' if epochs != 1 else ''}"
    if sampler.num_classes:
        rows = [str(label) for label in range(sampler.num_classes)]
        return plot_samples(sampler.per_class(grid, seed), f"{title}, a row per class", out, show, row_labels=rows)
    return plot_samples(sampler.sample(grid * grid, seed), title, out, show=show)


def interpolate(
    source: Path,
    out: Path,
    seeds: Sequence[int] = (0, 1),
    steps: int = 8,
    label: int | None = None,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """A latent walk between seeds (or, with classes, one seed's noise morphing from class to class) as a .png
    strip or an animated .gif (images enlarged to at least 112 pixels)."""
    sampler = Sampler.load(source, device)
    images = sampler.class_walk(classes, steps, seed) if classes else sampler.interpolate(seeds, steps, label)
    if out.suffix.lower() == ".gif":
        frames = [frame.permute(1, 2, 0).squeeze(-1).numpy() for frame in to_uint8(upscaled(images))]
        return save_gif(frames, out, frame_ms=80, last_frame_ms=800)
    return save_images(images, out, nrow=len(images))
