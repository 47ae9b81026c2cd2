"""Pick the device and the precision: CUDA, then MPS, then CPU; bf16 only where it runs fast."""

from __future__ import annotations

import contextlib
import os
from functools import cache
from pathlib import Path

import torch

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(name, False):
        raise ConfigError(f"device {name!r} is not available on this machine; use --device auto or cpu")
    return torch.device(name)


@cache
def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls are fast on CPUs with AVX512-BF16 or AMX; elsewhere they are emulated and slow, as they are
    where oneDNN is capped below those instructions (ONEDNN_MAX_CPU_ISA=AVX2, as when emulating an AVX2 CPU)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    capped = isa != "ALL" and not any(name in isa for name in ("BF16", "FP16", "AMX", "AVX10"))
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and not capped


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """auto: bf16 where measured faster at equal quality (benchmarks/), fp32 elsewhere."""
    if name == "fp32":
        return torch.float32
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        supported = cpu_has_fast_bf16()
    else:
        supported = False  # MPS autocast to bf16 is not reliably faster
    if name == "bf16" and not supported:
        raise ConfigError(f"bf16 is not supported (fast) on {device.type} here; use --precision fp32 or auto")
    return torch.bfloat16 if supported else torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward passes; a no-op in fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def tune_for(device: torch.device) -> None:
    """On CUDA: cuDNN picks the fastest convolution for our fixed shapes, and fp32 matmuls and convolutions run on
    TF32 tensor cores (10 mantissa bits: ample for GAN training, several times the fp32 speed)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
