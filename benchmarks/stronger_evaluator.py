"""A stronger evaluator than the shipped one, and what it reads of a run: a screen, nothing is saved.

Trains the classifier `train-evaluator` trains, with more blocks, more epochs and (for garments) mirrored images,
then scores a run's best.pt as `evaluate` does (10,000 samples, seed 0, classes in the test split's shares) with the
shipped evaluator and with the new one, each beside the real training images it reads (RESULTS.md section 23).

    python benchmarks/stronger_evaluator.py --run-dir runs/F --blocks 3 --epochs 15 --mirror
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import machine

from mnist_gan import checkpoints
from mnist_gan.data import fixed_subset, load_dataset
from mnist_gan.evaluator import evaluator_path, load_evaluator, train_evaluator
from mnist_gan.metrics import QualityMeter
from mnist_gan.sampling import scoring_sample

SHOWN = ("fid", "inception_score", "precision", "recall", "coverage", "label_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="A run of a dataset with a shipped evaluator.")
    parser.add_argument("--blocks", type=int, default=3, choices=(2, 3))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--mirror", action="store_true", help="Half of each batch mirrored (not for digits).")
    args = parser.parse_args()
    generator, config, _ = checkpoints.load_generator(checkpoints.resolve_source(None, args.run_dir, prefer_best=True))
    test_images, test_labels = load_dataset(config.dataset, config.data_dir, train=False)
    train_images, train_labels = load_dataset(config.dataset, config.data_dir, train=True)
    real, real_labels = fixed_subset(train_images), fixed_subset(train_labels)

    started = time.perf_counter()
    stronger, accuracy = train_evaluator(config.dataset, config.data_dir, epochs=args.epochs, blocks=args.blocks,
                                         mirror=args.mirror)  # fmt: skip
    seconds = time.perf_counter() - started
    shipped, metadata = load_evaluator(config.dataset, evaluator_path(config.dataset, config.data_dir))
    print(f"machine: {machine()}")
    print(f"| evaluator | test accuracy | side | {' | '.join(SHOWN)} |")
    print(f"|---|---:|---|{'---:|' * len(SHOWN)}")
    evaluators = (
        ("shipped", shipped, metadata["test_accuracy"]),
        (f"{args.blocks} blocks, {args.epochs} epochs{', mirrored' if args.mirror else ''} ({seconds:.0f} s)",
         stronger, accuracy),
    )  # fmt: skip
    for name, evaluator, test_accuracy in evaluators:
        meter = QualityMeter(evaluator, test_images, test_labels)
        fake, labels = scoring_sample(generator, len(real), config.latent_dim, 0, meter.class_shares)
        for side, scores in (("generated", meter.score(fake, labels)), ("real", meter.score(real, real_labels))):
            cells = " | ".join(f"{scores[key]:.4g}" for key in SHOWN)
            print(f"| {name} | {test_accuracy:.2%} | {side} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
