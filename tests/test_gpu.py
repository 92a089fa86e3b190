"""What the first GPU run checks of the CUDA paths mended by reading (`samtrack bench gpu` runs these with the
other gpu-marked tests); each is skipped with its reason on a machine without CUDA."""

from __future__ import annotations

import pytest
import torch

from pipelines.synthetic import box_of_first_shape, moving_shapes_frame
from tracker import Tracker
from tracker.models import seeded_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]
H, W = 120, 160


def _tracked(model, n_objects: int, precision: str) -> Tracker:
    t = Tracker.from_sam2(model, precision=precision)
    t.step(moving_shapes_frame(0, H, W))
    for k in range(n_objects):
        t.add_box(k + 1, box_of_first_shape(0, H, W))
    return t


def test_built_on_cuda_the_position_caches_live_there():
    model = seeded_model(image_size=128, device="cuda")
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention

    _tracked(model, 1, "bf16").step(moving_shapes_frame(1, H, W))
    dev = model.device
    for m in model.modules():
        if isinstance(m, PositionEmbeddingSine):
            assert all(x.device == dev for x in m.cache.values())
        if isinstance(m, RoPEAttention):
            assert m.freqs_cis.device == dev


def test_stage_times_from_events_add_up_to_the_step():
    """Stage times are GPU time between events: they sum to about the step's wall time (the step ends with
    the masks' copy to the host), each stage non-negative, the model's stages not zero."""
    import time

    t = _tracked(seeded_model(image_size=512, device="cuda"), 2, "bf16")
    for i in range(1, 4):
        t.step(moving_shapes_frame(i, H, W))  # warm-up: kernels chosen, memory allocated
    for i in range(4, 10):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        times = t.step(moving_shapes_frame(i, H, W)).times.__dict__
        wall = time.perf_counter() - t0
        assert all(v >= 0 for v in times.values()) and times["encoder"] > 0 and times["track"] > 0, times
        assert 0.5 * wall < sum(times.values()) <= wall * 1.05 + 1e-3, (times, wall)


def test_memory_assembly_does_not_wait_for_the_gpu(monkeypatch):
    """The pointers' positions are made on the device: gathering an object's memory never synchronises."""
    import tracker.core.tracker as tracker_module

    gather = tracker_module.gather_memory

    def strict(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return gather(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(tracker_module, "gather_memory", strict)
    t = _tracked(seeded_model(image_size=128, device="cuda"), 2, "fp32")
    for i in range(1, 6):
        assert set(t.step(moving_shapes_frame(i, H, W)).objects) == {1, 2}


def test_memory_graph_exports_from_a_cuda_model(tmp_path):
    """The memory attention's ONNX export traces with the model on the GPU (its rotations follow the model)."""
    from engines.memory_graph import export_memory_attention

    path = tmp_path / "memory.onnx"
    export_memory_attention(seeded_model(image_size=128, device="cuda"), 128, path)
    assert path.stat().st_size > 1 << 20


def test_precision_auto_follows_the_chosen_gpus_compute_capability():
    for i in range(torch.cuda.device_count()):
        native = torch.cuda.get_device_capability(i) >= (8, 0)
        assert Tracker.from_sam2(seeded_model(image_size=64, device=f"cuda:{i}")).precision == \
            ("bf16" if native else "fp32")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_a_tracker_on_the_second_gpu_runs_there():
    model = seeded_model(image_size=128, device="cuda:1")
    t = _tracked(model, 1, "bf16")
    res = t.step(moving_shapes_frame(1, H, W))
    assert res.objects[1].low_res.device == torch.device("cuda:1")
    assert all(x.device == torch.device("cuda:1") for x in t.tensors())
