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
# GPUs with bf16 tensor cores (Ampere, compute capability 8.0, and newer); torch emulates bf16 on older ones
# (T4, RTX 20xx), slower than their fp32.
BF16_CUDA_CAPABILITY = (8, 0)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is missing."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def resolve_precision(requested: str, device: torch.device, flags: set[str] | None = None) -> str:
    """"fp32" or "bf16" for a requested precision on a device: "auto" is bf16 where the device computes it
    natively (CUDA compute capability >= 8.0; CPUs with AVX512-BF16 or AMX), fp32 elsewhere."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        cap = torch.cuda.get_device_capability(device)
        native = tuple(cap) >= BF16_CUDA_CAPABILITY
        chosen, why = ("bf16" if native else "fp32"), f"{device}: compute capability {cap[0]}.{cap[1]}, bf16 " + (
            "native" if native else "emulated")
    elif device.type == "cpu":
        have = BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags)
        chosen, why = ("bf16", f"CPU has {', '.join(sorted(have))}") if have else ("fp32", "CPU without native bf16")
    else:
        chosen, why = "fp32", f"device {device.type}"
    # Not exact either way: with precision auto, backend auto compiles the encoder (OpenVINO on a CPU) even at fp32.
    log.info("precision auto -> %s (%s), within docs/engines.md's tolerance of Meta's; Meta's exact arithmetic "
             "needs precision fp32 named (backend auto then runs Meta's modules)", chosen, why)
    return chosen


def compute_context(precision: str, device: torch.device):
    """The context the model's forward calls run in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_ieee_fp32(precision: str, device: torch.device) -> None:
    """fp32 on a CUDA device means IEEE fp32: TF32 (on by default for cuDNN's convolutions) is turned off for
    cuDNN convolutions and cuBLAS matrix products, for the whole process (torch's switches are global), so
    Meta's predictor in the same process computes the same way. Nothing changes for bf16 or on the CPU."""
    if precision != "fp32" or device.type != "cuda":
        return
    if torch.backends.cudnn.conv.fp32_precision != "ieee" or torch.backends.cuda.matmul.fp32_precision != "ieee":
        log.info("precision fp32 on %s: TF32 off for convolutions and matrix products (IEEE fp32)", device)
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"
