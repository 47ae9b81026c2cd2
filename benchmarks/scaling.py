"""Data-parallel scaling on one machine: torchrun with N ranks x 1 thread against 1 process x N threads, at the
same global batch (so the same number of steps) and the same epochs, through the CLI; then each run's generator
scored on 10,000 samples.

    python benchmarks/scaling.py                      # 2 ranks, 10 epochs of MNIST's recipe (a DCGAN: about 15 minutes)
    python benchmarks/scaling.py --set arch=mlp --set r1=1 --set eval_samples=500   # sections 9-19's MLP recipe (4 min)
    python benchmarks/scaling.py --epochs 3 --ranks 2 --set depth=1

Prints one row per layout: wall seconds of training, images/s, and FID, IS and recall at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import DATA_DIR, machine

from mnist_gan import checkpoints, formats


def run(command: list[str], threads: int) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MNIST_GAN_DATA_DIR": str(DATA_DIR)}
    subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256, help="global batch: each rank takes its share")
    parser.add_argument("--set", action="append", default=[], help="extra main flags, as name=value")
    args = parser.parse_args()
    extra = [f"--{pair.split('=', 1)[0].replace('_', '-')}={pair.split('=', 1)[1]}" for pair in args.set]
    print(machine())
    print(f"{args.epochs} epochs, global batch {args.batch_size}, {' '.join(extra) or 'default recipe'}")
    folder = Path(tempfile.mkdtemp(prefix="scaling_"))
    main_command = [sys.executable, "-m", "mnist_gan", "main", "--epochs", str(args.epochs), *extra]
    layouts = {
        f"1 process x {args.ranks} threads": (main_command + ["--batch-size", str(args.batch_size)], args.ranks),
        f"{args.ranks} ranks x 1 thread": (
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.ranks}"]
            + main_command[1:]
            + ["--batch-size", str(args.batch_size // args.ranks)],
            1,
        ),
    }
    print("| layout | training s | images/s | FID | IS | recall |\n|---|---:|---:|---:|---:|---:|")
    for index, (name, (command, threads)) in enumerate(layouts.items()):
        run_dir = folder / f"run{index}"
        run([*command, "--run-dir", str(run_dir)], threads)
        payload = formats.load(checkpoints.latest_checkpoint(run_dir))
        scores = folder / f"run{index}.json"
        run([sys.executable, "-m", "mnist_gan", "evaluate", "--run-dir", str(run_dir), "--json", str(scores)], 2)
        metrics = json.loads(scores.read_text())["metrics"]
        rate = payload["step"] * args.batch_size / payload["elapsed"]
        print(f"| {name} | {payload['elapsed']:.0f} | {rate:,.0f} | {metrics['fid']:.1f} | "
              f"{metrics['inception_score']:.2f} | {metrics['recall']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
