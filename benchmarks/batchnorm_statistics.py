"""The weight average's BatchNorm statistics: as its checkpoint holds them, against measured anew on its weights.

Scores a run's best.pt (else its newest checkpoint) as `evaluate` does (10,000 samples, seed 0, the dataset's
evaluator), first with the statistics saved in it, then with them measured (mnist_gan.state.measure_batchnorm) from
each noise seed given, so that the measurement's own spread shows. A checkpoint written before training measured
them (benchmarks/RESULTS.md section 20 and earlier) holds the average of the generator's statistics.

    python benchmarks/batchnorm_statistics.py --run-dir runs/R --seeds 1,2,3 [--images 4096]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from common import machine

from mnist_gan import checkpoints
from mnist_gan.data import load_dataset
from mnist_gan.metrics import quality_meter, sample_shares
from mnist_gan.sampling import scoring_sample
from mnist_gan.state import BATCHNORM_IMAGES, measure_batchnorm

SHOWN = ("fid", "kid", "precision", "recall", "coverage", "label_accuracy", "inception_score")


def score_statistics(run_dir: Path, seeds: list[int], images: int, num_images: int = 10_000) -> list[dict[str, Any]]:
    """One row of metrics for the saved statistics ("saved"), then one per measurement seed."""
    generator, config, _ = checkpoints.load_generator(checkpoints.resolve_source(None, run_dir, prefer_best=True))
    meter = quality_meter(config.dataset, config.data_dir, torch.device("cpu"), background=config.background,
                          img_size=config.img_size)  # fmt: skip
    shares = sample_shares([meter])

    def score(model: torch.nn.Module, statistics: str) -> dict[str, Any]:
        fake, labels = scoring_sample(model, num_images, config.latent_dim, 0, shares)
        return {"statistics": statistics, **meter.score(fake, labels)}

    rows = [score(generator, "saved")]
    labels = None
    if config.conditional:
        labels = load_dataset(config.dataset, config.data_dir, img_size=config.img_size,
                              background=config.background)[1]  # fmt: skip
    for seed in seeds:  # in place: the saved statistics are scored above
        measure_batchnorm(generator, config.latent_dim, config.batch_size, labels, images=images, seed=seed)
        rows.append(score(generator, f"measured, seed {seed}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--seeds", default="1,2,3", help="noise seeds of the measurements, comma-separated")
    parser.add_argument("--images", type=int, default=BATCHNORM_IMAGES, help="generated images a measurement")
    args = parser.parse_args()
    print(machine())
    print(f"{args.run_dir}: statistics | " + " | ".join(SHOWN))
    for row in score_statistics(args.run_dir, [int(seed) for seed in args.seeds.split(",")], args.images):
        print(row["statistics"], "|", " | ".join(f"{row[name]:.3f}" for name in SHOWN if name in row), flush=True)


if __name__ == "__main__":
    main()
