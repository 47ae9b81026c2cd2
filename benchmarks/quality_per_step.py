"""Quality at equal training steps for several configurations: how the defaults were chosen.

    python benchmarks/quality_per_step.py --steps 1000,2000,4000,8000 \\
        --config arch=dcgan,batch_size=64,lr=2e-4 --config arch=mlp,batch_size=256,lr=2e-3

Steps, not seconds: the figures do not depend on machine load, so several copies can run side by
side (use --threads 1 each). Each checkpoint is scored with the evaluator on 10,000 samples of the
EMA generator. Combine with benchmarks/throughput.py (steps per second) for quality per minute.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import DATA_DIR, MnistGanLoop, machine
from time_to_quality import parse_overrides

from mnist_gan.config import Config
from mnist_gan.metrics import EVAL_SEED, quality_meter
from mnist_gan.sampling import scoring_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1000,2000,4000,8000")
    parser.add_argument("--config", action="append", required=True, help="comma-separated Config overrides")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoints = sorted(int(value) for value in args.steps.split(","))
    meter = quality_meter("mnist", DATA_DIR)
    print(f"machine: {machine()}")
    print("| config | steps | train s | FID | IS | classes | class KL | precision | recall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for overrides in args.config:
        loop = MnistGanLoop(Config(data_dir=DATA_DIR, **parse_overrides(overrides.split(","))))
        batches, done, seconds = loop.batches(), 0, 0.0
        for target in checkpoints:
            started = time.perf_counter()
            while done < target:
                loop.step(next(batches))
                done += 1
            seconds += time.perf_counter() - started
            m = meter.score(*scoring_sample(loop.sampler(), 10_000, loop.config.latent_dim, EVAL_SEED))
            print(
                f"| {overrides} | {done} | {seconds:.0f} | {m['fid']:.1f} | {m['inception_score']:.2f} | {m['classes_covered']} | "
                f"{m['class_kl']:.3f} | {m['precision']:.2f} | {m['recall']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
