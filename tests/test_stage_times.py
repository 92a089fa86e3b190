"""Stage timings on the device's timeline (CUDA events, read once per step) and per-frame work that must not
wait for a GPU: checked on the CPU with CUDA's event API monkeypatched, and by recording the ops the memory
assembly dispatches."""

from __future__ import annotations

import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import tracker.core.clock as clock_module
import tracker.core.tracker as tracker_module
from pipelines.synthetic import box_of_first_shape, moving_shapes_frame
from tests.conftest import make_model
from tracker import Tracker
from tracker.core.batch import step_batch
from tracker.core.clock import StageClock

H, W = 48, 64


@pytest.fixture(scope="module")
def model():
    return make_model(image_size=64)


class FakeEvent:
    """torch.cuda.Event as the clock uses it; the "GPU" stamps an event when it is recorded (host time)."""

    recorded: list[FakeEvent] = []
    waits = 0

    def __init__(self, enable_timing: bool = False):
        assert enable_timing, "timing events must be asked for"
        self.t: float | None = None

    def record(self, stream=None):
        assert stream == "stream of cuda:1", stream  # the tracker's device's current stream
        self.t = time.perf_counter()
        FakeEvent.recorded.append(self)

    def synchronize(self):
        FakeEvent.waits += 1

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.t is not None and end.t is not None, "elapsed time of an event never recorded"
        return (end.t - self.t) * 1000.0


@pytest.fixture
def fake_cuda_events(monkeypatch):
    FakeEvent.recorded, FakeEvent.waits = [], 0
    monkeypatch.setattr(clock_module.torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(clock_module.torch.cuda, "current_stream", lambda device: f"stream of {device}")

    def no_global_sync(*a, **k):
        raise AssertionError("a stage waited for the whole GPU")

    monkeypatch.setattr(clock_module.torch.cuda, "synchronize", no_global_sync)
    return FakeEvent


def _tracked(model, n_objects: int = 2, **options) -> Tracker:
    t = Tracker.from_sam2(model, precision="fp32", **options)
    t.step(moving_shapes_frame(0, H, W))
    for k in range(n_objects):
        t.add_box(k + 1, box_of_first_shape(0, H, W))
    return t


def test_on_cuda_stages_are_timed_by_events_with_one_wait_per_step(model, fake_cuda_events):
    """perf_counter deltas on a GPU measure kernel launches; the clock records events instead and waits for
    the device once per step, at the end (after the masks' copy has waited anyway)."""
    t = _tracked(model)
    t.clock = StageClock(torch.device("cuda:1"))
    for i in range(1, 4):
        before = len(fake_cuda_events.recorded)
        waits = fake_cuda_events.waits
        res = t.step(moving_shapes_frame(i, H, W))
        marks = fake_cuda_events.recorded[before:]
        assert fake_cuda_events.waits - waits == 1  # one wait per step, not one per stage
        # preprocess/encoder/step marks and a start and end per tracked object in both per-object stages
        assert len(marks) >= 5 + 2 * 2 * 2
        times = res.times.__dict__
        assert all(v >= 0 for v in times.values()) and times["track"] > 0 and times["memory_encoder"] > 0
        span = marks[-1].t - marks[0].t  # every stage, back to back on the device's timeline
        assert abs(sum(times.values()) - span) < 0.005, (times, span)


def test_a_batch_of_frames_shares_its_encoder_time(model, fake_cuda_events):
    a = _tracked(model, 1)
    b = a.share(precision="fp32")
    b.step(moving_shapes_frame(0, H, W))
    b.add_box(1, box_of_first_shape(0, H, W))
    for t in (a, b):
        t.clock = StageClock(torch.device("cuda:1"))
    first = len(fake_cuda_events.recorded)
    ra, rb = step_batch([a, b], [moving_shapes_frame(1, H, W)] * 2)
    batch_marks = fake_cuda_events.recorded[first:first + 3]  # before, after preprocessing, after the encoder
    encoder_s = batch_marks[2].t - batch_marks[1].t
    assert ra.times.encoder == rb.times.encoder == pytest.approx(encoder_s / 2)


def test_prompts_outside_a_step_keep_no_marks(model, fake_cuda_events):
    """Marks are only kept while a step runs: a stream of prompts without frames holds nothing."""
    t = _tracked(model, 1)
    t.clock = StageClock(torch.device("cuda:1"))
    before = len(fake_cuda_events.recorded)
    for _ in range(3):
        t.add_points(1, [[20, 20]], [1])
    assert len(fake_cuda_events.recorded) == before and t._spans is None


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops.append(str(func))
        if func is torch.ops.aten._to_copy.default and kwargs.get("device") not in (None, args[0].device):
            self.ops.append("copy across devices")
        return func(*args, **kwargs)


def test_pointer_positions_are_made_on_the_device(model, monkeypatch):
    """Meta builds the pointers' positions with torch.tensor(list).to(device): a copy from pageable host memory
    per object and frame, which on a GPU also waits for it. The memory assembly makes no tensor from host
    data (aten.lift_fresh) and copies nothing across devices."""
    recorded = []
    gather = tracker_module.gather_memory

    def watched(*args, **kwargs):
        with _Ops() as mode:
            out = gather(*args, **kwargs)
        recorded.append(mode.ops)
        return out

    monkeypatch.setattr(tracker_module, "gather_memory", watched)
    t = _tracked(model, 2)
    for i in range(1, 6):
        t.step(moving_shapes_frame(i, H, W))
    with_pointers = [ops for ops in recorded if "aten.stack.default" in ops]
    assert len(with_pointers) >= 8  # every tracked frame, both objects, with pointers from frame 1 on
    for ops in recorded:
        assert "aten.lift_fresh.default" not in ops and "copy across devices" not in ops, ops
