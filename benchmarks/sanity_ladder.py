"""The sanity ladder (#27): on real data the metrics must rank worse images worse, in order.

    python -m mnist_gan train-evaluator --dataset folder --data-dir ../shared/data/emoji    # once
    python benchmarks/sanity_ladder.py --data-dir ../shared/data/emoji --img-size 32 --run runs/blobs/checkpoints/epoch_000.pt \
        --show runs/A

Rows, each scored by the folder's evaluator against its test split at --img-size (the runs' size), beside the
real-data reference: the real training images; the same blurred (downscaled 4x and back at the data's own size);
the same with their colour channels shuffled (RGB -> BRG); each --run's generator (a run's best.pt, else its
latest; or a checkpoint file: an early epoch's draws blobs), drawing as many images; uniform noise. FID, KID and
recall should rise and fall down the ladder in that order; the script prints whether they do. --show adds a
run's row beside the ladder, outside the order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine

from mnist_gan import checkpoints
from mnist_gan.data import fixed_subset, load_dataset
from mnist_gan.data.batches import resize
from mnist_gan.metrics import QualityMeter, quality_meter, sample_shares
from mnist_gan.sampling import scoring_sample

COLUMNS = ("fid", "kid", "precision", "recall", "coverage", "classes_covered", "class_kl")


def blurred(images: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Downscaled `factor` times and back up: the shapes and colours stay, the detail goes."""
    size = images.shape[-1]
    small = F.interpolate(images.float(), scale_factor=1 / factor, mode="bilinear", antialias=True)
    return F.interpolate(small, size=(size, size), mode="bilinear").round().clamp(0, 255).to(torch.uint8)


def generated(run_dir: Path, count: int, size: int, meter: QualityMeter) -> torch.Tensor:
    """count images of a run's generator (or a checkpoint file's), drawn as `evaluate` draws them (a folder's classes
    in its shares)."""
    is_file = run_dir.is_file()
    source = checkpoints.resolve_source(run_dir if is_file else None, None if is_file else run_dir, prefer_best=True)
    generator, config, _ = checkpoints.load_generator(source, torch.device("cpu"))
    shares = sample_shares([meter])
    images, _ = scoring_sample(generator, count, config.latent_dim, seed=0, shares=shares)
    if images.shape[-1] != size:
        raise SystemExit(f"{run_dir} draws {images.shape[-1]} px images: pass --img-size {images.shape[-1]}")
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="folder")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "emoji"))
    parser.add_argument("--background", default="white")
    parser.add_argument("--img-size", type=int, default=0, help="the size every row is scored at (the runs'); "
                        "0: the data's own")  # fmt: skip
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="a rung: a run (its best.pt, else latest) or a checkpoint file, worse than the "
                             "rows above it (an early epoch's blobs)")  # fmt: skip
    parser.add_argument("--show", type=Path, action="append", default=[], help="a run shown beside the ladder")
    args = parser.parse_args()
    load = {"background": args.background}
    meter = quality_meter(args.dataset, args.data_dir, img_size=args.img_size, **load)
    real = fixed_subset(load_dataset(args.dataset, args.data_dir, img_size=args.img_size, **load)[0])
    size = real.shape[-1]
    # Blurred at the data's own size, as a person sees the images: 4x of 64 px leaves 16 px, not 8.
    native = fixed_subset(load_dataset(args.dataset, args.data_dir, **load)[0])
    ladder = {
        "real training images": real,
        "real, blurred (4x down and up at the data's size)": resize(blurred(native), size),
        "real, colour channels shuffled (RGB -> BRG)": real[:, [2, 0, 1]] if real.shape[1] == 3 else 255 - real,
        **{f"generator of {run}": generated(run, len(real), size, meter) for run in args.run},
        "uniform noise": torch.randint(
            0, 256, real.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        ),
    }
    shown = {f"(beside the ladder) generator of {run}": generated(run, len(real), size, meter) for run in args.show}
    scores = {name: meter.score(images) for name, images in {**ladder, **shown}.items()}
    print(f"machine: {machine()}\n{args.dataset} {args.data_dir}: {len(real):,} images a row, at {size} px\n")
    print("| row | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS))
    for name, metrics in scores.items():  # the first row is the real-data reference
        print(f"| {name} | " + " | ".join(f"{metrics[column]:.4g}" for column in COLUMNS) + " |")
    for column, rises in (("fid", True), ("kid", True), ("recall", False)):
        values = [scores[name][column] for name in ladder]
        ordered = all((a <= b) if rises else (a >= b) for a, b in zip(values, values[1:], strict=False))
        print(f"{column} {'rises' if rises else 'falls'} down the ladder: {'yes' if ordered else 'NO'}")


if __name__ == "__main__":
    main()
