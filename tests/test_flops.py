"""The work of a step counted with attention included (bench/flops.py): the counter run with the math attention
backend agrees with a count by hand from the model's shapes, and the counter alone (torch's CPU attention kernel)
misses most of the memory attention, which is why the math backend is used."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.flops import count_modules, count_step, cpu_peak, memory_attention_gflop
from pipelines.synthetic import moving_shapes_frame
from tests.conftest import make_model

SIZE = 128  # 8x8 top-level features: every stage runs, quickly


@pytest.fixture(scope="module")
def model():
    return make_model(image_size=SIZE)


@pytest.fixture(scope="module")
def frames():
    return [moving_shapes_frame(i, 96, 120) for i in range(10)]


def test_the_memory_attention_count_equals_a_count_by_hand(model, frames):
    """Prompted on frame 0, stepped over 1..8, frame 9 counted: 7 memories (the prompted frame and frames 3..8) and
    9 object pointers (the prompted frame and frames 1..8)."""
    counted = count_modules(model, frames, [[20, 15, 70, 60]])["MemoryAttention"]
    assert counted == pytest.approx(memory_attention_gflop(model, SIZE, memories=7, pointers=9), rel=1e-6)
    two = count_step(model, frames, [[20, 15, 70, 60], [60, 40, 110, 90]])
    one = count_step(model, frames, [[20, 15, 70, 60]])
    assert two["encoder"] == pytest.approx(one["encoder"]) and two["track"] == pytest.approx(2 * one["track"])


def test_torchs_counter_alone_misses_the_cpu_attention_kernel(model):
    """Why the math backend: counted with the CPU's fused attention kernel, an attention call is free."""
    q = torch.randn(1, 1, 64, 256)
    k = v = torch.randn(1, 1, 448, 256)
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 0


def test_the_peak_is_a_number_per_isa():
    p = cpu_peak(2)
    assert p.cores == 2 and p.ghz > 0 and p.bf16_gflops >= p.fp32_gflops > 0
    assert p.isa in ("amx", "avx512-bf16", "avx512", "avx2", "sse")
    assert np.isfinite(p.fp32_gflops)
