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
    assert Tracker.from_sam2(make_model()).options.batch_objects is False


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
