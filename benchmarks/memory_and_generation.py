"""Peak memory of a default training run, and the time to generate 10,000 images from the command line.

    python benchmarks/memory_and_generation.py [--batches 300] [--repeats 3]

Both run the real command in a subprocess: memory is the child's peak resident set size (start-up,
dataset, evaluator and training together); generation time includes Python and torch start-up, and beside it, in
turn, the time of `python -c "import torch"` alone: on these machines that part alone varies from 1.6 to 3 s.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DATA_DIR, machine, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=300, help="batches per epoch of the measured training run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        command = [
            sys.executable,
            "-m",
            "mnist_gan",
            "main",
            "--data-dir",
            DATA_DIR,
            "--run-dir",
            str(run_dir),
            "--epochs",
            "2",
            "--max-batches",
            str(args.batches),
        ]
        subprocess.run(command, check=True, capture_output=True)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kilobytes on Linux
        print(
            f"peak memory of a default training run (2 epochs of {args.batches} batches, with evaluation): "
            f"{peak_mib:,.0f} MiB"
        )

        out = Path(folder) / "samples.npz"
        generate = [sys.executable, "-m", "mnist_gan", "generate", "--checkpoint", str(run_dir / "generator.pth"),
                    "--num-images", "10000", "--out", str(out)]  # fmt: skip
        import_torch = [sys.executable, "-c", "import torch"]
        timings: dict[str, list[float]] = {"generate": [], "import torch": []}
        for _ in range(args.repeats):  # alternating, so a drifting machine slows both alike
            timings["generate"].append(seconds_to_run(generate))
            timings["import torch"].append(seconds_to_run(import_torch))
        assert np.load(out)["images"].shape == (10_000, 28, 28)
        for name, label in (("generate", "generate 10,000 images to .npz, start-up included"),
                            ("import torch", "python -c 'import torch' alone, in turn with it")):  # fmt: skip
            runs = ", ".join(f"{t:.2f}" for t in timings[name])
            print(f"{label}: median {median(timings[name]):.2f} s (runs: {runs})")


def seconds_to_run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
