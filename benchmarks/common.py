"""Shared pieces of the benchmarks: the classic MNIST GAN loop, timed training, medians, the machine's description."""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torchvision import datasets, transforms

from mnist_gan.config import Config
from mnist_gan.data import epoch_batches, load_dataset
from mnist_gan.devices import cpu_has_fast_bf16, resolve_precision
from mnist_gan.state import new_state
from mnist_gan.step import training_step
from mnist_gan.trainer import count_classes

DATA_DIR = os.environ.get("MNIST_GAN_DATA_DIR", str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def machine() -> str:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    bf16 = "AVX512-BF16/AMX: yes (bf16 fast)" if cpu_has_fast_bf16() else "AVX512-BF16/AMX: no (bf16 emulated)"
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, CPU capability {torch.backends.cpu.get_cpu_capability()}, {bf16}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


# ------------------------------------------------------------------ the classic loop, as users copy it
class ClassicGenerator(nn.Module):
    """The MLP generator of the widely copied PyTorch-GAN gan.py."""

    def __init__(self, latent_dim: int = 100) -> None:
        super().__init__()

        def block(n_in: int, n_out: int, normalize: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
            if normalize:
                layers.append(nn.BatchNorm1d(n_out, 0.8))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(
            *block(latent_dim, 128, normalize=False),
            *block(128, 256),
            *block(256, 512),
            *block(512, 1024),
            nn.Linear(1024, 784),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z).view(z.size(0), 1, 28, 28)


class ClassicDiscriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(784, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(256, 1),
            nn.Sigmoid(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.view(images.size(0), -1))


class ClassicLoop:
    """DataLoader with per-image Resize/ToTensor/Normalize, Sigmoid + BCELoss, batch 64, Adam(2e-4, 0.5, 0.999)."""

    def __init__(self, data_dir: str = DATA_DIR, seed: int = 0) -> None:
        torch.manual_seed(seed)
        dataset = datasets.MNIST(
            data_dir,
            train=True,
            download=False,
            transform=transforms.Compose(
                [transforms.Resize(28), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
            ),
        )
        self.start(torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True), ClassicGenerator(),
                   ClassicDiscriminator())  # fmt: skip

    def start(self, loader: torch.utils.data.DataLoader, generator: nn.Module, discriminator: nn.Module) -> None:
        """What the classic scripts share: Adam 2e-4 with b1 0.5 for both networks, BCE on D's Sigmoid."""
        self.loader, self.generator, self.discriminator = loader, generator, discriminator
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.loss = nn.BCELoss()

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from self.loader

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        real = batch[0]
        valid, fake_label = torch.ones(real.size(0), 1), torch.zeros(real.size(0), 1)
        self.optimizer_g.zero_grad()
        fake = self.generator(torch.randn(real.size(0), 100))
        self.loss(self.discriminator(fake), valid).backward()
        self.optimizer_g.step()
        self.optimizer_d.zero_grad()
        loss_d = (
            self.loss(self.discriminator(real), valid) + self.loss(self.discriminator(fake.detach()), fake_label)
        ) / 2
        loss_d.backward()
        self.optimizer_d.step()

    def sampler(self) -> nn.Module:
        return copy.deepcopy(self.generator).eval()


class MnistGanLoop:
    """mnist_gan's own training step and data path, driven batch by batch."""

    def __init__(self, config: Config, data_dir: str = DATA_DIR, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.precision = resolve_precision(config.precision, self.device)
        images, labels = load_dataset(config.dataset, data_dir, img_size=config.img_size)
        self.images, self.labels = images.to(self.device), labels.to(self.device)  # on a GPU, as training keeps it
        self.config = dataclasses.replace(config, num_classes=count_classes(config, (images, labels)))
        self.state = new_state(self.config, self.device)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = 0
        while True:
            yield from epoch_batches(
                self.images, self.labels, batch_size=self.config.batch_size, seed=self.config.seed, epoch=epoch
            )
            epoch += 1

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        """One step with the config's loss and (lazy) R1 (--lr-schedule is not applied: these loops have no set length)."""
        training_step(self.state, self.config, self.precision, *batch)

    def sampler(self) -> nn.Module:
        return copy.deepcopy(self.state.sample_generator).eval()


def images_per_second(loop: ClassicLoop | MnistGanLoop, seconds: float, warmup_steps: int = 10) -> float:
    """Training throughput including the data path, over a fixed wall-clock window."""
    batches = loop.batches()
    for _ in range(warmup_steps):
        loop.step(next(batches))
    synchronize()
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = next(batches)
        loop.step(batch)
        images += len(batch[0])
    synchronize()  # a GPU runs behind the host: count only finished work
    return images / (time.perf_counter() - started)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_with_snapshots(
    loop: ClassicLoop | MnistGanLoop, budgets: list[float], on_snapshot: Callable[[float, int, nn.Module], None]
) -> None:
    """Train until the last budget (seconds of wall time), handing the measured seconds, the steps and a copy of
    the sampler to on_snapshot as each budget is reached."""
    batches, pending = loop.batches(), sorted(budgets)
    elapsed, steps = 0.0, 0
    while pending:
        started = time.perf_counter()
        loop.step(next(batches))
        elapsed += time.perf_counter() - started
        steps += 1
        if elapsed >= pending[0]:
            pending.pop(0)
            on_snapshot(elapsed, steps, loop.sampler())  # snapshot and scoring time are not counted
