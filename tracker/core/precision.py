"""Which arithmetic a tracker runs in: fp32 (Meta's, bit-exact) or bf16 (the fast path), and "auto"."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

from .options import PRECISIONS

log = logging.getLogger(__name__)

# CPU flags with native bf16 arithmetic (dot products, or AMX tiles): elsewhere bf16 is emulated and slower.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is missing."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def resolve_precision(requested: str, device: torch.device, flags: set[str] | None = None) -> str:
    """"fp32" or "bf16" for a requested precision on a device: "auto" is bf16 on CUDA GPUs with bf16
    and on CPUs with AVX512-BF16 or AMX, fp32 elsewhere."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        chosen, why = ("bf16", "CUDA GPU with bf16") if torch.cuda.is_bf16_supported() else ("fp32", "GPU without bf16")
    elif device.type == "cpu":
        have = BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags)
        chosen, why = ("bf16", f"CPU has {', '.join(sorted(have))}") if have else ("fp32", "CPU without native bf16")
    else:
        chosen, why = "fp32", f"device {device.type}"
    log.info("precision auto -> %s (%s); precision=fp32 gives Meta's exact arithmetic", chosen, why)
    return chosen


def compute_context(precision: str, device: torch.device):
    """The context the model's forward calls run in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
