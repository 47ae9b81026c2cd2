"""Time-to-quality: mnist_gan's defaults and the classic loop trained for the same wall-clock budgets, scored by the evaluator.

    python benchmarks/time_to_quality.py                 # budgets 1, 2, 5, 10 minutes (about 30 minutes in all)
    python benchmarks/time_to_quality.py --budgets 0.5,1 --set arch=mlp --set batch_size=64
    python benchmarks/time_to_quality.py --set dataset=fashion-mnist --loops mnist_gan   # its recipe, its evaluator

mnist_gan trains one run per budget, as a user would with `main --time-budget MINUTES` (its learning rate decays to
0 over the budget; per-epoch evaluation off), and its exported EMA generator is scored. The classic loop, which has no
schedule, trains once and is scored at each budget along the way. Both count training time only.

Prints one row per (loop, budget) and the first budget at which each reaches IS >= 8.5 with all ten classes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from common import DATA_DIR, ClassicLoop, machine, train_with_snapshots

from mnist_gan import checkpoints, formats
from mnist_gan.config import Config
from mnist_gan.metrics import EVAL_SEED, quality_meter, sample_shares
from mnist_gan.reporting import SilentReporter
from mnist_gan.sampling import scoring_sample
from mnist_gan.trainer import train

NUM_IMAGES = 10_000
TARGET_IS = 8.5


def parse_overrides(pairs: list[str]) -> dict:
    types = {field.name: field.type for field in dataclasses.fields(Config)}
    overrides = {}
    for pair in pairs:
        name, value = pair.split("=", 1)
        parse_bool = {"true": True, "1": True, "false": False, "0": False}.__getitem__
        overrides[name] = {"int": int, "float": float, "bool": parse_bool}.get(types[name], str)(
            value.lower() if types[name] == "bool" else value
        )
    return overrides


def train_with_budgets(
    config: Config, budgets: list[float], on_result: Callable[[float, int, torch.nn.Module], None]
) -> None:
    """One mnist_gan run per budget (seconds), each with --time-budget; hands its training seconds, steps and
    exported generator to on_result. The runs are deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="time_to_quality_") as folder:
        for seconds in budgets:
            run_dir = Path(folder) / f"{seconds:g}s"
            train(dataclasses.replace(config, time_budget=seconds / 60, run_dir=str(run_dir)), SilentReporter)
            payload = formats.load(checkpoints.latest_checkpoint(run_dir))
            generator, _, _ = checkpoints.load_generator(run_dir / "generator.pth")
            on_result(payload["elapsed"], payload["step"], generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="1,2,5,10", help="minutes, comma-separated")
    parser.add_argument("--set", action="append", default=[], help="a Config override for mnist_gan, name=value")
    parser.add_argument("--loops", default="mnist_gan,classic")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    budgets, loops = [float(value) * 60 for value in args.budgets.split(",")], args.loops.split(",")
    # what `main` trains (its dataset's recipe), without per-epoch evaluation
    config = Config.for_dataset(data_dir=DATA_DIR, eval_every=0, sample_interval=0, **parse_overrides(args.set))
    if config.dataset != "mnist" and "classic" in loops:
        parser.error("the classic loop trains MNIST only: add --loops mnist_gan")
    meter = quality_meter(config.dataset, DATA_DIR, img_size=config.img_size)  # as `evaluate` scores the run
    shares = sample_shares([meter])
    print(f"machine: {machine()}")
    rows = []
    for name in loops:

        def score(seconds: float, steps: int, generator: torch.nn.Module, name: str = name) -> None:
            metrics = meter.score(*scoring_sample(generator, NUM_IMAGES, config.latent_dim, EVAL_SEED, shares))
            rows.append({"loop": name, "minutes": seconds / 60, "steps": steps, **metrics})
            print(
                f"{name:10s} {seconds / 60:5.1f} min {steps:6d} steps  FID {metrics['fid']:7.2f}  IS {metrics['inception_score']:5.2f}  "
                f"classes {metrics['classes_covered']:2d}  class KL {metrics['class_kl']:.3f}  "
                f"precision {metrics['precision']:.2f}  recall {metrics['recall']:.2f}",
                flush=True,
            )

        if name == "classic":
            train_with_snapshots(ClassicLoop(), budgets, score)
        else:
            print(f"mnist_gan config: {config}")
            train_with_budgets(config, budgets, score)
    for name in loops if config.dataset == "mnist" else []:  # the IS target is MNIST's
        reached = [
            row["minutes"]
            for row in rows
            if row["loop"] == name and row["inception_score"] >= TARGET_IS and row["classes_covered"] == 10
        ]
        print(
            f"{name}: first reaches IS >= {TARGET_IS} with 10 classes at "
            f"{f'{reached[0]:.1f} min' if reached else 'no budget measured'}"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
