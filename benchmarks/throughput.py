"""Training throughput: the classic MNIST GAN loop against mnist_gan, side by side in one run.

    python benchmarks/throughput.py [--seconds 10] [--repeats 3] [--config r1=1.0 --config ...] [--device auto]
    python benchmarks/throughput.py --profile 40     # then where the default step's time goes, operator by operator

Rows: the classic loop (DataLoader + per-image transforms, Sigmoid + BCELoss, MLP, batch 64);
mnist_gan at the classic's own settings (MLP, batch 64, fp32); mnist_gan's default configuration (what `main` trains on MNIST), with
its achieved GFLOP/s as a share of this machine's measured matmul peak in the dtype it uses; one more row per
--config (comma-separated Config overrides of the default). With a GPU (--device auto picks it) the mnist_gan rows
run on it, with the data on the GPU as training keeps it, and the share is of the GPU's measured matmul peak; the
classic loop stays on the CPU, as the script users copy runs unless edited.
Windows alternate between loops so drifting machine load hits all of them alike; medians are reported.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import ClassicLoop, MnistGanLoop, images_per_second, machine, median, synchronize
from time_to_quality import parse_overrides
from torch.utils.flop_counter import FlopCounterMode

from mnist_gan.config import Config
from mnist_gan.devices import resolve_device, tune_for
from mnist_gan.step import r1_weight

DEFAULT = "mnist_gan default (the CLI's MNIST recipe: conditional DCGAN, batch 128)"
CLASSIC_SETTINGS = "mnist_gan at classic settings (MLP, batch 64, fp32)"  # set beside the classic loop only


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of a large square matmul: the practical peak of this CPU (or GPU) for the dtype."""
    size = size * 4 if device.type == "cuda" else size  # a GPU needs a larger product to be busy
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    a @ b
    best = 0.0
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        a @ b
        synchronize()
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


def flops_per_step(loop: MnistGanLoop) -> int:
    """Floating-point operations of one full training step (D update, G update), counted by torch, on a step
    without the lazy R1 penalty: torch's counter cannot follow the autograd.grad that R1 calls."""
    batches = loop.batches()
    while r1_weight(loop.config, loop.state.step):
        loop.step(next(batches))
    with FlopCounterMode(display=False) as counter:
        loop.step(next(batches))
    return counter.get_total_flops()


def profile_table(loop: MnistGanLoop, steps: int, rows: int = 15) -> str:
    """Where a step's time goes: the operators with the most self time over `steps` steps (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    batches = loop.batches()
    loop.step(next(batches))  # warm-up
    on_gpu = loop.device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_gpu else [])]) as profiler:
        for _ in range(steps):
            loop.step(next(batches))
        synchronize()
    return profiler.key_averages().table(sort_by=f"self_{'cuda' if on_gpu else 'cpu'}_time_total", row_limit=rows)


def share_of_peak(name: str, loop: MnistGanLoop, images_per_second: float, peaks: dict[torch.dtype, float]) -> str:
    """A row's achieved GFLOP/s as a share of the measured matmul peak in the dtype it trains in."""
    flops = flops_per_step(loop)
    achieved = flops * images_per_second / loop.config.batch_size / 1e9
    if loop.precision not in peaks:
        peaks[loop.precision] = matmul_peak_gflops(loop.precision, loop.device)
    peak, dtype = peaks[loop.precision], str(loop.precision).removeprefix("torch.")
    lazy_r1 = " (a lower bound: steps with the lazy R1 penalty cost more)" if loop.config.r1 else ""
    return (
        f"{name}: {flops / 1e6:,.0f} MFLOP per step ({dtype}), {achieved:,.1f} GFLOP/s achieved; "
        f"{dtype} matmul peak {peak:,.0f} GFLOP/s; share {achieved / peak:.1%}{lazy_r1}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one measuring window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", action="append", default=[], help="an extra row: comma-separated Config overrides")
    parser.add_argument("--device", default="auto", help="where the mnist_gan rows run: auto (a GPU if any), cpu, cuda")
    parser.add_argument("--profile", type=int, default=0, help="then profile this many steps of the default")
    args = parser.parse_args()
    device = resolve_device(args.device)
    tune_for(device)
    loops = {
        "classic loop (MLP, batch 64)": ClassicLoop(),
        CLASSIC_SETTINGS: MnistGanLoop(Config(arch="mlp", batch_size=64, precision="fp32"), device=device),
        DEFAULT: MnistGanLoop(Config.for_dataset(), device=device),
        **{
            f"mnist_gan {overrides}": MnistGanLoop(
                Config.for_dataset(**parse_overrides(overrides.split(","))), device=device
            )
            for overrides in args.config
        },
    }
    results: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            results[name].append(images_per_second(loop, args.seconds))
    medians = {name: median(values) for name, values in results.items()}
    classic = medians["classic loop (MLP, batch 64)"]

    print(f"machine: {machine()}; mnist_gan rows on {device}")
    print(f"median of {args.repeats} windows of {args.seconds:.0f} s each\n")
    print("| loop | images/s (median) | runs | vs classic |")
    print("|---|---:|---|---:|")
    for name, value in medians.items():
        runs = ", ".join(f"{v:,.0f}" for v in results[name])
        print(f"| {name} | {value:,.0f} | {runs} | {value / classic:.2f}x |")

    peaks: dict[torch.dtype, float] = {}
    print()
    for name, loop in loops.items():
        if isinstance(loop, MnistGanLoop) and name != CLASSIC_SETTINGS:
            print(share_of_peak(name, loop, medians[name], peaks))
    if args.profile:
        default = loops[DEFAULT]
        print(f"\nmnist_gan default, {args.profile} steps, operators by self time:")
        print(profile_table(default, args.profile))


if __name__ == "__main__":
    main()
