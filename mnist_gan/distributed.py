"""Data-parallel training under torchrun: the process group, this process's rank, and the few collective steps the
trainer needs. Without torchrun (WORLD_SIZE unset or 1) there is one process and every function here is a no-op.

Each rank holds a full copy of G and D, trains on its own shard of every batch, and PyTorch's
DistributedDataParallel averages the gradients: the update equals one process's on the whole batch."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from inspect import signature
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import ConfigError, MnistGanError

# How long a collective waits for a silent peer before failing; a peer that died is noticed at once (its
# sockets close), this bounds the rest. Longer than the slowest thing rank 0 does while the others wait (an
# evaluation and a checkpoint).
TIMEOUT = timedelta(minutes=10)


class RankFailed(MnistGanError):
    """Another rank stopped or died: this one cannot go on."""


def launched() -> bool:
    """True under torchrun (or any launcher that sets WORLD_SIZE) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 writes everything a run leaves (events, grids, metrics, checkpoints); the others only train."""
    return rank() == 0


def start(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA) and return this rank's device: one
    GPU per rank, by LOCAL_RANK."""
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"data-parallel training runs on cpu or cuda, not {device.type}", "device")
    if not active():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return device


def stop() -> None:
    if active():
        dist.destroy_process_group()


def wrap(module: nn.Module, device: torch.device, sync_buffers: bool) -> nn.Module:
    """module in its own DistributedDataParallel wrapper (G and D apart: one wrapper around both breaks, as D is
    run for G's update without being updated); sync_buffers: rank 0's BatchNorm statistics copied to the others
    before each forward. Without a process group: the module itself."""
    if not active():
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    # torch 2.14 renamed the flag (broadcast_buffers still works, with a warning); older releases know only the old
    name = "forward_sync_buffers" if "forward_sync_buffers" in signature(DistributedDataParallel).parameters else ""
    return DistributedDataParallel(module, device_ids=device_ids, **{name or "broadcast_buffers": sync_buffers})


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm statistics over the whole batch of every rank (PyTorch's SyncBatchNorm: GPUs only)."""
    if device.type != "cuda":
        raise ConfigError("--sync-batchnorm needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on the CPU)")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


@contextlib.contextmanager
def peer_errors() -> Iterator[None]:
    """A collective that fails (a peer died or timed out), ours or DDP's gradient all-reduce, becomes one clear
    error. This rank's own failures (out of memory, a bug) and everything without a process group stay what
    they are."""
    try:
        yield
    except RuntimeError as error:
        if not (active() and from_a_peer(error)):
            raise
        reason = " ".join(str(error).split())[:200]
        raise RankFailed(
            f"rank {rank()}: another rank stopped, so this one cannot go on ({reason}); "
            "the run's newest complete checkpoint is intact: resume with --resume"
        ) from None


def from_a_peer(error: RuntimeError) -> bool:
    """Whether a failure came from the communication with the other ranks: torch's distributed errors (nccl's),
    or gloo's, which are plain RuntimeErrors that name gloo's transport or a lost connection."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return False
    return isinstance(error, dist.DistError) or any(mark in str(error) for mark in PEER_FAILURES)


PEER_FAILURES = ("gloo", "NCCL", "Connection closed by peer", "Connection reset by peer", "Timed out")


def collective(call: Any, *args: Any) -> Any:
    with peer_errors():
        return call(*args)


def barrier() -> None:
    """Wait for every rank (rank 0 finishing a checkpoint, say)."""
    if active():
        collective(dist.barrier)


def agree(elapsed: float, signal_number: int, device: torch.device) -> tuple[float, int]:
    """The largest of every rank's (elapsed time, stop signal): every rank then ends at the same step, for the
    same reason, with the same clock. One small all-reduce (a host sync on a GPU): the trainer calls it every
    --log-every steps."""
    if not active():
        return elapsed, signal_number
    values = torch.tensor([elapsed, float(signal_number)], dtype=torch.float64, device=device)
    collective(dist.all_reduce, values, dist.ReduceOp.MAX)
    return values[0].item(), int(values[1].item())


def broadcast(value: Any) -> Any:
    """Rank 0's value (a new run's folder name, say) on every rank."""
    if not active():
        return value
    holder = [value]
    collective(dist.broadcast_object_list, holder, 0)
    return holder[0]
