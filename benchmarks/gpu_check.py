"""Everything the GPU path promises, measured in one command on the day a GPU is at hand (issue 29).

    python benchmarks/gpu_check.py --prepare gpu_data    # once, where the data is: MNIST's .gz files (~11 MB) and
                                                         # a tar.gz of the emoji folder (~20 MB) from ../shared/data
    python benchmarks/gpu_check.py OUT --data gpu_data   # on the GPU machine (gpu_data/ is git-ignored: carry it)
    python benchmarks/gpu_check.py OUT --data gpu_data --smoke   # the same steps, tiny, on the CPU (a test runs it)

Steps, each a separate process timed from start to exit, its output kept in OUT/logs/: the environment; the default
MNIST run (`main`: its recipe, per-epoch evaluation), then `evaluate` on it; benchmarks/throughput.py at the
default batch and at 256, 1,024, 4,096 and 16,384, with the share of the GPU's measured matmul peak; `generate
--num-images 10000`; a DCGAN on the emoji folder at 64 px for a fixed number of steps; the same under torchrun (one
rank, nccl, --sync-batchnorm); the CUDA tests. A failing step is recorded and the next one runs: one visit to a
borrowed GPU should measure everything it can. Writes only under OUT (the data is unpacked there, and the package's
cache is pointed there); prints the table and saves it as OUT/table.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
EMOJI_ARCHIVE = "emoji.tar.gz"
GAN = [sys.executable, "-m", "mnist_gan"]
BATCHES = (256, 1024, 4096, 16384)  # beside the default batch (128); 256 is the batch of #29's 300,000 images/s
TARGETS = {  # issue 29's targets on one H200, shown beside what was measured
    "main": "<= 20 s",
    "evaluate": "FID <= 10, IS >= 9.3, recall >= 0.75, label accuracy >= 98%",
    "throughput": ">= 300,000 images/s at batch 256, >= 1,000,000 at the best batch",
    "generate": "<= 3 s",
}


def prepare(target: Path, source: Path = SHARED) -> None:
    """MNIST's IDX files gzipped (the package reads .gz as they are) and the emoji folder as one tar.gz."""
    raw = target / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        with (
            open(source / "MNIST" / "raw" / name, "rb") as plain,
            gzip.open(raw / f"{name}.gz", "wb", compresslevel=1) as packed,
        ):
            shutil.copyfileobj(plain, packed)
    with tarfile.open(target / EMOJI_ARCHIVE, "w:gz") as archive:
        archive.add(source / "emoji", arcname="emoji")
    print(f"prepared {target}: {sum(f.stat().st_size for f in target.rglob('*') if f.is_file()) / 1e6:.1f} MB")


def unpack(prepared: Path, out: Path) -> Path:
    """A private copy of the data under OUT, where the package's caches of it then go too; MNIST's files unzipped, as
    torchvision's MNIST (the benchmarks' classic loop) reads only those."""
    data = out / "data"
    raw = data / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        with gzip.open(prepared / "MNIST" / "raw" / f"{name}.gz", "rb") as packed, open(raw / name, "wb") as plain:
            shutil.copyfileobj(packed, plain)
    with tarfile.open(prepared / EMOJI_ARCHIVE) as archive:
        archive.extractall(data, filter="data")
    return data


class Steps:
    """Runs each step as a process, logs its output, and keeps one table row per step."""

    def __init__(self, out: Path, env: dict[str, str]) -> None:
        self.out, self.env, self.rows = out, env, []
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def run(self, name: str, command: list[str], timeout: float) -> tuple[bool, float, str]:
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
            ok, output = done.returncode == 0, done.stdout + done.stderr
        except subprocess.TimeoutExpired as expired:
            ok, output = False, f"timed out after {timeout:.0f} s\n{expired.stdout or ''}{expired.stderr or ''}"
        seconds = time.perf_counter() - started
        (self.out / "logs" / f"{name}.log").write_text(f"$ {' '.join(command)}\n{output}")
        return ok, seconds, output

    def row(self, name: str, ok: bool, seconds: float, result: str) -> None:
        self.rows.append((name, "ok" if ok else "FAILED", f"{seconds:.1f}", result, TARGETS.get(name, "")))
        print(f"{name}: {'ok' if ok else 'FAILED'} in {seconds:.1f} s: {result}", flush=True)

    def table(self) -> str:
        lines = ["| step | status | seconds (start to exit) | result | target |", "|---|---|---:|---|---|"]
        return "\n".join(lines + [f"| {' | '.join(row)} |" for row in self.rows])


def last_line(output: str, containing: str) -> str:
    return next((line.strip() for line in reversed(output.splitlines()) if containing in line), "(not found)")


def finished(output: str) -> str:
    """main's last line, "finished in N s" (its training time), without the paths."""
    return last_line(output, "finished in").removeprefix("INFO").split(";")[0].strip()


def environment(steps: Steps) -> None:
    probe = (
        "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', "
        "platform.python_version()); print('gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else "
        "'none'); print('cpu capability', torch.backends.cpu.get_cpu_capability())"
    )
    ok, seconds, output = steps.run("environment", [sys.executable, "-c", probe], 120)
    smi = shutil.which("nvidia-smi")
    query = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    driver = subprocess.run([smi, *query], capture_output=True, text=True).stdout.strip() if smi else "no nvidia-smi"
    steps.row("environment", ok, seconds, "; ".join(output.strip().splitlines() + [driver]))


def check(out: Path, data: Path, smoke: bool) -> str:
    """Every step in turn (each one's failure recorded, the next one run); the table, also saved as OUT/table.md."""
    # Every step reads the unpacked data: throughput.py and the CUDA tests find it through MNIST_GAN_DATA_DIR (a GPU
    # machine has no ../shared/data beside the checkout).
    env = {"MNIST_GAN_CACHE_DIR": str(out / "cache"), "MNIST_GAN_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    steps = Steps(out, {**os.environ, **env})
    environment(steps)
    default_run(steps, out, data, smoke)
    throughput(steps, smoke)
    colour_folder(steps, out, data, smoke)
    ok, seconds, output = steps.run("cuda_tests", [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-n", "0",
                                                   "-p", "no:cacheprovider", "tests/test_gpu.py"], 300)  # fmt: skip
    steps.row("cuda_tests", ok, seconds, last_line(output, " in "))
    table = steps.table()
    (out / "table.md").write_text(table + "\n")
    return table


def default_run(steps: Steps, out: Path, data: Path, smoke: bool) -> None:
    """The default MNIST run from start to exit, `evaluate` on 10,000 samples, then `generate` 10,000 images."""
    # --smoke: the same commands, tiny, on the CPU, so that the script cannot rot between the days a GPU is at hand
    tiny = ["--device", "cpu", "--epochs", "1", "--max-batches", "3", "--eval-samples", "100"] if smoke else []
    run = out / "mnist"
    ok, seconds, output = steps.run("main", [*GAN, "main", "--data-dir", str(data), "--run-dir", str(run), *tiny], 300)
    steps.row("main", ok, seconds, finished(output) if ok else last_line(output, "rror"))

    scores = out / "evaluate.json"
    evaluate = [*GAN, "evaluate", "--run-dir", str(run), "--data-dir", str(data), "--json", str(scores)]
    evaluate += ["--device", "cpu", "--num-images", "100"] if smoke else []
    ok, seconds, output = steps.run("evaluate", evaluate, 300)
    steps.row("evaluate", ok, seconds, summary(scores) if ok else last_line(output, "rror"))

    count = 1000 if smoke else 10_000
    generate = [*GAN, "generate", "--run-dir", str(run), "--num-images", str(count), "--out", str(out / "samples.npz")]
    ok, seconds, output = steps.run("generate", generate + (["--device", "cpu"] if smoke else []), 120)
    steps.row("generate", ok, seconds, f"{count:,} images" if ok else last_line(output, "rror"))


def throughput(steps: Steps, smoke: bool) -> None:
    """benchmarks/throughput.py at the default batch and at BATCHES, each with its share of the measured peak."""
    batches = (32,) if smoke else BATCHES  # one extra row, small: the largest would take minutes on a CPU
    command = [sys.executable, "benchmarks/throughput.py", *[f"--config=batch_size={size}" for size in batches]]
    command += ["--seconds", "0.1", "--repeats", "1", "--device", "cpu"] if smoke else ["--seconds", "3"]
    ok, seconds, output = steps.run("throughput", command, 400)
    shares = [line.rsplit("share ", 1)[-1].split()[0] for line in output.splitlines() if " share " in line]
    rows = [line.strip("| ").split(" | ")[:2] for line in output.splitlines() if line.startswith("| mnist_gan ")]
    rows = [f"{name}: {value} images/s" for name, value in rows]
    rows = rows[:1] + [f"{row} ({share} of peak)" for row, share in zip(rows[1:], shares, strict=False)]
    steps.row("throughput", ok, seconds, "; ".join(rows) if ok else last_line(output, "rror"))


def colour_folder(steps: Steps, out: Path, data: Path, smoke: bool) -> None:
    """A DCGAN on the emoji folder at 64 px for a fixed number of steps; then the same in one torchrun rank (nccl
    and SyncBatchNorm on a GPU; a multi-GPU machine is needed to see statistics actually shared)."""
    colour = ["--dataset", "folder", "--data-dir", str(data / "emoji"), "--arch", "dcgan", "--img-size", "64",
              "--epochs", "1", "--max-batches", "3" if smoke else "200", "--eval-every", "0"]  # fmt: skip
    colour += ["--device", "cpu", "--width", "8"] if smoke else []
    ok, seconds, output = steps.run("dcgan_64px", [*GAN, "main", *colour, "--run-dir", str(out / "emoji")], 300)
    steps.row("dcgan_64px", ok, seconds, finished(output) if ok else last_line(output, "rror"))

    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"]
    synced = colour + ([] if smoke else ["--sync-batchnorm"])  # SyncBatchNorm runs on GPUs only
    command = [*launcher, "-m", "mnist_gan", "main", *synced, "--run-dir", str(out / "emoji_torchrun")]
    ok, seconds, output = steps.run("torchrun_1_rank", command, 300)
    steps.row("torchrun_1_rank", ok, seconds, finished(output) if ok else last_line(output, "rror"))


def summary(scores: Path) -> str:
    """The evaluate --json figures the targets name, beside the real data's where it gives them."""
    result = json.loads(scores.read_text())
    metrics, reference = result["metrics"], result["reference"]
    shown = [name for name in ("fid", "inception_score", "recall", "label_accuracy") if name in metrics]
    return ", ".join(f"{name} {metrics[name]:.3g} (real {reference.get(name, float('nan')):.3g})" for name in shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="the folder everything is written to (made if absent)")
    parser.add_argument("--data", type=Path, default=ROOT / "gpu_data", help="the folder --prepare made")
    parser.add_argument("--prepare", type=Path, help="make this data folder from ../shared/data and exit")
    parser.add_argument("--smoke", action="store_true", help="every step, tiny, on the CPU")
    args = parser.parse_args()
    if args.prepare:
        return prepare(args.prepare)
    if args.out is None:
        parser.error("give the output folder (or --prepare DIR)")
    args.out.mkdir(parents=True, exist_ok=True)
    data = unpack(args.data, args.out.resolve())
    print(check(args.out.resolve(), data, args.smoke))


if __name__ == "__main__":
    main()
