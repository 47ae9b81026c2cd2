"""PyTorch's classic DCGAN (examples/dcgan) against mnist_gan on a colour folder, at equal training time (#27).

    python benchmarks/classic_dcgan.py --data-dir ../shared/data/emoji --minutes 5
    python benchmarks/classic_dcgan.py --minutes 5 --config batch_size=64     # mnist_gan's side at other flags

The classic loop is examples/dcgan/main.py as users run it: ImageFolder with Resize(64), CenterCrop(64), ToTensor
and Normalize (PIL's convert("RGB") drops transparency), a DataLoader with 2 workers, ngf = ndf = 64 at 64 px, the
N(0, 0.02) init, Adam 2e-4 with b1 0.5, Sigmoid + BCELoss, batch 64, no weight average. mnist_gan trains
`main --dataset folder --img-size 32 --time-budget MINUTES` with the folder recipe (plus --config overrides). Both
count training time only; both are scored by the folder's evaluator (`train-evaluator` first) on 10,000 samples.
(ImageFolder takes every sub-folder for a class: a data folder mnist_gan can write in holds `.mnist_gan_cache/`
after a first run; the emoji folder is read-only, so its cache is in the user's.)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import ClassicLoop, machine, train_with_snapshots
from time_to_quality import parse_overrides
from torch import nn
from torchvision import datasets, transforms

from mnist_gan import train
from mnist_gan.config import Config
from mnist_gan.data import to_uint8
from mnist_gan.metrics import quality_meter
from mnist_gan.scoring import evaluate

NZ, NGF, NDF = 100, 64, 64
COLUMNS = ("fid", "kid", "precision", "recall", "coverage", "classes_covered")


def classic_generator() -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(NZ, NGF * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(NGF * 8), nn.ReLU(True),
        nn.ConvTranspose2d(NGF * 8, NGF * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 4), nn.ReLU(True),
        nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),
        nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF), nn.ReLU(True),
        nn.ConvTranspose2d(NGF, 3, 4, 2, 1, bias=False), nn.Tanh(),
    )  # fmt: skip


def classic_discriminator() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, NDF, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(NDF * 2, NDF * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(NDF * 4, NDF * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(NDF * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
    )  # fmt: skip


def weights_init(module: nn.Module) -> None:
    if "Conv" in type(module).__name__:
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif "BatchNorm" in type(module).__name__:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ClassicDCGAN(ClassicLoop):
    """examples/dcgan/main.py's loop: D on a real and a fake batch, then G on the same fakes."""

    def __init__(self, data_dir: str, seed: int = 0) -> None:
        torch.manual_seed(seed)
        folder = datasets.ImageFolder(data_dir, transform=transforms.Compose([
            transforms.Resize(64), transforms.CenterCrop(64), transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]))  # fmt: skip
        generator, discriminator = classic_generator(), classic_discriminator()
        generator.apply(weights_init)
        discriminator.apply(weights_init)
        loader = torch.utils.data.DataLoader(folder, batch_size=64, shuffle=True, num_workers=2)
        self.start(loader, generator, discriminator)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        real = batch[0]
        ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
        self.discriminator.zero_grad()
        self.loss(self.discriminator(real).view(-1), ones).backward()
        fake = self.generator(torch.randn(len(real), NZ, 1, 1))
        self.loss(self.discriminator(fake.detach()).view(-1), zeros).backward()
        self.optimizer_d.step()
        self.generator.zero_grad()
        self.loss(self.discriminator(fake).view(-1), ones).backward()
        self.optimizer_g.step()


@torch.no_grad()
def classic_samples(generator: nn.Module, count: int) -> torch.Tensor:
    noise = torch.randn(count, NZ, 1, 1, generator=torch.Generator().manual_seed(0))
    return torch.cat([to_uint8(generator(chunk)) for chunk in noise.split(500)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "emoji"))
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--config", default="", help="comma-separated Config overrides of mnist_gan's side")
    parser.add_argument("--num-images", type=int, default=10_000)
    args = parser.parse_args()
    meter = quality_meter("folder", args.data_dir)  # the same evaluator scores both loops, each at its own size

    snapshots: list[tuple[float, int, nn.Module]] = []
    classic = ClassicDCGAN(args.data_dir)
    train_with_snapshots(classic, [args.minutes * 60], lambda *snapshot: snapshots.append(snapshot))
    seconds, steps, generator = snapshots[-1]
    scores = {f"classic DCGAN, 64 px ({steps:,} steps, {seconds:.0f} s)": meter.score(
        classic_samples(generator, args.num_images))}  # fmt: skip

    overrides = parse_overrides(args.config.split(",")) if args.config else {}
    with tempfile.TemporaryDirectory() as folder:
        config = Config.for_dataset(dataset="folder", data_dir=args.data_dir, img_size=32, epochs=1000,
                                    time_budget=args.minutes, run_dir=str(Path(folder) / "run"), **overrides)  # fmt: skip
        run_dir = train(config)
        result = evaluate(run_dir=run_dir, num_images=args.num_images)
    scores[f"mnist_gan folder recipe, 32 px {args.config}".strip()] = result["metrics"]
    references = {"real data at 64 px (the classic's reference)": meter.reference,
                  "real data at 32 px (mnist_gan's reference)": result["reference"]}  # fmt: skip

    print(
        f"machine: {machine()}\n{args.data_dir}, {args.minutes:g} min of training each, {args.num_images:,} samples\n"
    )
    print("| loop | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS))
    for name, metrics in {**scores, **references}.items():
        print(f"| {name} | " + " | ".join(f"{metrics[column]:.4g}" for column in COLUMNS) + " |")


if __name__ == "__main__":
    main()
