"""Work per tracking step, counted: GFLOP per stage, the attention kernels included, beside the CPU's nominal peak.

torch's FlopCounterMode counts no CPU attention kernel (`_scaled_dot_product_flash_attention_for_cpu`): counted as it
is, SAM 2's memory attention looks like 13.7 GFLOP at 512 px instead of about 48. Here one step is counted with
the math attention backend, whose matrix products the counter sees, and the memory attention is also counted by
hand from the model's shapes (`memory_attention_gflop`), the two checked against each other in tests/test_flops.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from tracker.devices import cpu_info

# The step's stages (tracker/core/results.py StageTimes) and the sam2 modules whose work each is.
STAGE_MODULES = {"encoder": ("ImageEncoder", "Conv2d"), "track": ("MemoryAttention", "MaskDecoder", "PromptEncoder",
                                                                 "MLP", "Linear"),
                 "memory_encoder": ("MemoryEncoder",)}


def count_step(model: torch.nn.Module, frames: list[np.ndarray], boxes: list) -> dict[str, float]:
    """GFLOP of one step per stage for len(boxes) objects with a full memory: a tracker on Meta's own modules
    (fp32) prompted on the first frame, stepped over the others, the last step counted."""
    by_module = count_modules(model, frames, boxes)
    return {stage: sum(by_module.get(m, 0.0) for m in modules) for stage, modules in STAGE_MODULES.items()}


def count_modules(model: torch.nn.Module, frames: list[np.ndarray], boxes: list) -> dict[str, float]:
    """GFLOP of the last frame's step by sam2 module class (as `count_step` steps them)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from tracker import Tracker

    tracker = Tracker.from_sam2(model, precision="fp32", backend="torch")
    tracker.step(frames[0])
    for k, box in enumerate(boxes):
        tracker.add_box(k + 1, box)
    for f in frames[1:-1]:
        tracker.step(f)
    counter = FlopCounterMode(display=False, depth=1)
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        tracker.step(frames[-1])
    return {name: sum(ops.values()) / 1e9 for name, ops in counter.get_flop_counts().items()}


def memory_attention_gflop(model: torch.nn.Module, image_size: int, memories: int, pointers: int) -> float:
    """The memory attention of one object, counted by hand from the model's shapes: `memories` spatial memories of
    (S/16)^2 tokens and `pointers` object pointers (C / mem_dim tokens each); a multiply-add is two FLOP."""
    ma = model.memory_attention
    q = (image_size // 16) ** 2
    keys = memories * q + pointers * (model.hidden_dim // model.mem_dim)
    total = 0
    for layer in ma.layers:
        sa, ca = layer.self_attn, layer.cross_attn_image
        total += 2 * q * sa.embedding_dim * sa.internal_dim * 3 + 2 * q * sa.internal_dim * sa.embedding_dim  # qkv, out
        total += 2 * 2 * q * q * sa.internal_dim  # q k^T and the weighted sum of v
        total += 2 * q * ca.embedding_dim * ca.internal_dim + 2 * q * ca.internal_dim * ca.embedding_dim  # q, out
        total += 2 * 2 * keys * ca.kv_in_dim * ca.internal_dim  # k and v projections of every memory token
        total += 2 * 2 * q * keys * ca.internal_dim  # q k^T and the weighted sum of v
        total += 2 * 2 * q * layer.linear1.in_features * layer.linear1.out_features  # the MLP's two layers
    return total / 1e9


@dataclass(frozen=True)
class Peak:
    """The CPU's nominal peak (what its vector units can do at its base clock, all cores used), for a roofline:
    a stage's GFLOP/s over this says how much of the machine it uses."""

    isa: str  # the widest arithmetic the CPU has: "amx", "avx512-bf16", "avx512", "avx2"
    ghz: float
    cores: int
    fp32_gflops: float
    bf16_gflops: float


def cpu_peak(cores: int | None = None) -> Peak:
    """From /proc/cpuinfo: FLOP a cycle a core by ISA (an FMA is two FLOP; AMD's Zen 4 runs 512-bit operations on
    256-bit units, half an Intel AVX-512 core's rate; AVX512-BF16 doubles fp32's rate, AMX is Intel's 1024 bf16
    FLOP a cycle), times the clock, times the cores."""
    cpu = cpu_info()
    cores = cores or os.cpu_count() or 1
    if "avx512f" in cpu.flags:
        fp32 = 32 if cpu.amd else 64
    elif "fma" in cpu.flags:
        fp32 = 32
    else:
        fp32 = 16
    bf16 = {"amx": 1024, "avx512-bf16": 2 * fp32}.get(cpu.isa, fp32)
    isa, ghz = cpu.isa, cpu.mhz / 1000
    return Peak(isa, ghz, cores, fp32 * ghz * cores, bf16 * ghz * cores)
