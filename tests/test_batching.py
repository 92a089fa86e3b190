"""Objects tracked in one batch (TrackerOptions.batch_objects) equal one-at-a-time tracking within 1e-5."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import make_model
from tracker import Tracker

TOLERANCE = 1e-5  # fp32: batched kernels round differently, nothing else may differ


def _session(tracker: Tracker, frames: list[np.ndarray]) -> list[dict[int, tuple[np.ndarray, float]]]:
    """Four objects joining on different frames (so memories of different lengths meet on one frame),
    a correction on a past frame, and a removal; every frame's logits and scores."""
    out = []
    for i, f in enumerate(frames):
        r = tracker.step(f)
        if i in (0, 3, 9):
            k = (0, 3, 9).index(i)
            tracker.add_box(k + 1, [4 + 20 * k, 6, 50 + 20 * k, 60])
        if i == 9:
            tracker.add_points(4, [[30, 40]], [1])
        if i == 14:
            tracker.add_points(2, [[60, 30]], [0], frame_index=12, clear_old_points=False)
        if i == 20:
            tracker.remove_object(3)
        out.append({o: (v.logits, v.score) for o, v in r.objects.items()})
    return out


def test_batched_equals_per_object(long_video):
    _, frames = long_video
    model = make_model()
    batch_sizes = []
    ref = _session(Tracker.from_sam2(model, batch_objects=False, precision="fp32"), frames)
    hook = model.memory_attention.register_forward_pre_hook(
        lambda _m, _args, kwargs: batch_sizes.append(kwargs["curr"][0].shape[1]), with_kwargs=True)
    try:
        got = _session(Tracker.from_sam2(model, batch_objects=True, precision="fp32"), frames)
    finally:
        hook.remove()
    assert max(batch_sizes) >= 3, "objects were never attended in one batch"
    worst = 0.0
    for a, b in zip(ref, got, strict=True):
        assert a.keys() == b.keys()
        for o in a:
            worst = max(worst, float(np.abs(a[o][0] - b[o][0]).max()), abs(a[o][1] - b[o][1]))
    assert worst <= TOLERANCE, f"batched tracking differs by {worst:.3g}"
    assert sum(len(r) for r in ref) > 40


def test_batching_is_off_by_default_so_meta_exactness_holds():
    assert Tracker.from_sam2(make_model(), backend="torch").options.batch_objects is False


@pytest.mark.slow  # 48 steps
def test_streams_encoded_in_one_batch_equal_one_at_a_time(long_video):
    """Three trackers on one model (a daemon's streams), each with its own frames and objects: stepping
    them with one encoder call for all (core.batch.step_batch) equals stepping each alone, within 1e-5."""
    from tracker.core.batch import step_batch

    _, frames = long_video
    model = make_model()
    calls = []
    hook = model.image_encoder.register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[0]))

    def trackers() -> list[Tracker]:
        first = Tracker.from_sam2(model, precision="fp32")
        return [first, first.share(precision="fp32"), first.share(precision="fp32")]

    def run(ts: list[Tracker], batched: bool) -> list[dict]:
        out = []
        for i in range(8):
            fs = [frames[i], frames[39 - i], frames[(7 * i) % 40]]  # each stream its own sequence
            results = step_batch(ts, fs) if batched else [t.step(f) for t, f in zip(ts, fs, strict=True)]
            if i == 1:
                for k, t in enumerate(ts):
                    t.add_box(1, [4 + 10 * k, 6, 60 + 10 * k, 70])
            if i == 6:
                ts[1].add_points(2, [[30, 40]], [1], frame_index=4)
            out.append([{o: (v.logits, v.score) for o, v in r.objects.items()} for r in results])
        return out

    try:
        ref = run(trackers(), batched=False)
        assert set(calls) == {1}
        calls.clear()
        got = run(trackers(), batched=True)
    finally:
        hook.remove()
    assert calls and set(calls) == {3}  # one encoder call per turn, for the three frames
    worst = 0.0
    for turn_a, turn_b in zip(ref, got, strict=True):
        for a, b in zip(turn_a, turn_b, strict=True):
            assert a.keys() == b.keys()
            for o in a:
                worst = max(worst, float(np.abs(a[o][0] - b[o][0]).max()), abs(a[o][1] - b[o][1]))
    assert worst <= TOLERANCE, f"batched encoding differs by {worst:.3g}"
    assert ref[-1][1].keys() == {1, 2}


def test_a_failure_in_a_batched_turn_belongs_to_its_own_stream(video, monkeypatch):
    """One stream's bad frame, or one tracker failing after the shared encoder ran: the other streams' frames
    are tracked and returned (their trackers advanced, so their results must reach subscribers); the failing
    tracker's error is its own outcome."""
    from tracker.core.batch import step_batch
    from tracker.errors import FrameError

    _, frames = video
    first = Tracker.from_sam2(make_model(), precision="fp32")
    ts = [first, first.share(precision="fp32"), first.share(precision="fp32")]
    out = step_batch(ts, [frames[0], frames[0][..., 0], frames[0]])  # stream 1's frame is grey, not RGB
    assert isinstance(out[1], FrameError)
    assert [t.latest_frame for t in ts] == [0, None, 0] and out[0].frame_index == out[2].frame_index == 0

    def broken(*_a, **_k):
        raise RuntimeError("a kernel failed")

    ts[2].add_box(1, [4, 6, 60, 70])
    monkeypatch.setattr(ts[2], "_track_objects", broken)
    out = step_batch(ts, [frames[1]] * 3)
    assert isinstance(out[2], RuntimeError) and not isinstance(out[0], Exception)
    assert out[1].frame_index == 0 and out[0].frame_index == 1  # each stream's own numbering
    # the failed tracker did not take the frame: no number used, nothing in its window that was not published
    assert ts[2].latest_frame == 0 and ts[2].window == [0]

    def small_batches_only(image):  # the shared encoder fails on the batch (out of memory, say)
        if image.shape[0] > 1:
            raise RuntimeError("out of memory")
        return first.model.forward_image(image)

    for t in ts:
        t.encoder = small_batches_only
    out = step_batch(ts, [frames[2]] * 3)  # each frame then goes alone, and only the broken tracker fails
    assert [type(o).__name__ for o in out] == ["FrameResult", "FrameResult", "RuntimeError"]
    assert [o.frame_index for o in out[:2]] == [2, 1]
