"""Bad frames and prompts raise the documented errors and leave the tracker exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import make_model
from tracker import FrameError, FrameWindowError, PromptError, Tracker, UnknownObjectError
from tracker.errors import TooManyObjectsError


@pytest.fixture(scope="module")
def model():
    return make_model()


def _frames(video, n):
    return video[1][:n]


BAD_CALLS = {
    # name: (call(tracker, frame), expected error, words the message must contain)
    "frame_list": (lambda t, f: t.step(f.tolist()), FrameError, "numpy array"),
    "frame_gray": (lambda t, f: t.step(f[..., 0]), FrameError, "HxWx3"),
    "frame_rgba": (lambda t, f: t.step(np.dstack([f, f[..., :1]])), FrameError, "HxWx3"),
    "frame_float": (lambda t, f: t.step(f.astype(np.float32)), FrameError, "uint8"),
    "frame_empty": (lambda t, f: t.step(f[:0]), FrameError, "empty"),
    "point_nan": (lambda t, f: t.add_points(1, [[np.nan, 3]], [1]), PromptError, "NaN"),
    "point_inf": (lambda t, f: t.add_points(1, [[np.inf, 3]], [1]), PromptError, "NaN or infinity"),
    "point_outside": (lambda t, f: t.add_points(1, [[500, 3]], [1]), PromptError, "outside the frame"),
    "point_negative": (lambda t, f: t.add_points(1, [[-1, 3]], [1]), PromptError, "outside the frame"),
    "point_shape": (lambda t, f: t.add_points(1, [[1, 2, 3]], [1]), PromptError, "[N, 2]"),
    "no_points": (lambda t, f: t.add_points(1, [], []), PromptError, "N >= 1"),
    "label_value": (lambda t, f: t.add_points(1, [[1, 2]], [2]), PromptError, "1 (positive) or 0"),
    "label_text": (lambda t, f: t.add_points(1, [[1, 2]], ["yes"]), PromptError, "1 (positive) or 0"),
    "label_count": (lambda t, f: t.add_points(1, [[1, 2], [3, 4]], [1]), PromptError, "one label per point"),
    "points_text": (lambda t, f: t.add_points(1, "here", [1]), PromptError, "points"),
    "obj_id_str": (lambda t, f: t.add_points("a", [[1, 2]], [1]), PromptError, "integers"),
    "box_inverted": (lambda t, f: t.add_box(1, [30, 30, 10, 40]), PromptError, "x0 < x1"),
    "box_outside": (lambda t, f: t.add_box(1, [0, 0, 10, 400]), PromptError, "outside the frame"),
    "box_short": (lambda t, f: t.add_box(1, [0, 0, 10]), PromptError, "[x0, y0, x1, y1]"),
    "mask_shape": (lambda t, f: t.add_mask(1, np.ones((10, 10), bool)), PromptError, "frame's shape"),
    "mask_empty": (lambda t, f: t.add_mask(1, np.zeros(f.shape[:2], bool)), PromptError, "empty"),
    "mask_values": (lambda t, f: t.add_mask(1, np.full(f.shape[:2], 7, np.uint8)), PromptError, "boolean or 0/1"),
    "frame_old": (lambda t, f: t.add_points(1, [[1, 2]], [1], frame_index=0), FrameWindowError, "feature window"),
    "frame_future": (lambda t, f: t.add_points(1, [[1, 2]], [1], frame_index=99), FrameWindowError, "feature window"),
    "frame_negative": (lambda t, f: t.add_points(1, [[1, 2]], [1], frame_index=-1), FrameWindowError, "window"),
    "frame_float_index": (lambda t, f: t.add_points(1, [[1, 2]], [1], frame_index=3.0), FrameWindowError, "window"),
    "remove_unknown": (lambda t, f: t.remove_object(42), UnknownObjectError, "unknown object 42"),
    "result_old": (lambda t, f: t.result(0), FrameWindowError, "feature window"),
    "too_many_points": (lambda t, f: t.add_points(1, [[1, 2]] * 65, [1] * 65), PromptError, "at most 64"),
    "object_over_cap": (lambda t, f: t.add_points(99, [[1, 2]], [1]), TooManyObjectsError, "max_objects"),
}


def test_prompt_before_any_frame(model):
    tracker = Tracker.from_sam2(model, backend="torch")
    with pytest.raises(FrameWindowError, match="call step"):
        tracker.add_points(1, [[1, 2]], [1])
    assert tracker.objects == []


def test_bad_inputs_raise_and_leave_state_unchanged(model, video):
    """Tracker A gets every bad call between frames; tracker B does not: their outputs stay identical."""
    frames = _frames(video, 12)
    a, b = (Tracker.from_sam2(model, backend="torch", feature_window=4, max_objects=1) for _ in range(2))
    calls = list(BAD_CALLS.items())
    for i, f in enumerate(frames):
        ra, rb = a.step(f), b.step(f)
        if i == 0:
            ra, rb = a.add_points(1, [[20, 25]], [1]), b.add_points(1, [[20, 25]], [1])
        assert set(ra.objects) == set(rb.objects)
        for k in ra.objects:
            assert torch.equal(torch.from_numpy(ra.objects[k].logits), torch.from_numpy(rb.objects[k].logits))
        if i >= 5:  # frame 0 has left the window; the object exists
            for name, (call, err, words) in calls:
                n_tensors = len(a.tensors())
                with pytest.raises(err) as exc:
                    call(a, f)
                assert words in str(exc.value), f"{name}: {exc.value}"
                assert len(a.tensors()) == n_tensors, name
                assert a.objects == [1], name
    assert a.objects == b.objects == [1]


def test_unknown_option_is_rejected(model):
    with pytest.raises(TypeError, match="unknown tracker options"):
        Tracker.from_sam2(model, backend="torch", max_cond_frame=3)
    with pytest.raises(ValueError, match="max_cond_frames must be >= 2"):
        Tracker.from_sam2(model, backend="torch", max_cond_frames=1)


def test_remove_and_reset(model, video):
    frames = _frames(video, 4)
    t = Tracker.from_sam2(model, backend="torch")
    t.step(frames[0])
    t.add_points(1, [[20, 25]], [1])
    t.add_box(2, [70, 40, 110, 80])
    assert t.objects == [1, 2]
    assert set(t.step(frames[1]).objects) == {1, 2}
    t.remove_object(2)
    assert set(t.step(frames[2]).objects) == {1}
    t.reset()
    assert t.objects == [] and t.step(frames[3]).objects == {}
    assert t.latest_frame == 3


def test_objects_beyond_the_cap_are_refused_until_one_is_removed(model, video):
    frames = _frames(video, 3)
    t = Tracker.from_sam2(model, backend="torch", max_objects=2)
    t.step(frames[0])
    t.add_points(1, [[20, 25]], [1])
    t.add_box(2, [70, 40, 110, 80])
    with pytest.raises(TooManyObjectsError, match="already tracking 2 objects"):
        t.add_mask(3, np.ones(frames[0].shape[:2], bool))
    t.add_points(1, [[22, 25]], [1])  # a correction of a tracked object is no new object
    assert set(t.step(frames[1]).objects) == {1, 2}
    t.remove_object(2)
    t.add_points(3, [[90, 60]], [1])
    assert t.objects == [1, 3] and set(t.step(frames[2]).objects) == {1, 3}


def test_points_kept_on_a_frame_add_up_to_at_most_64(model, video):
    t = Tracker.from_sam2(model, backend="torch")
    t.step(_frames(video, 1)[0])
    t.add_points(1, [[20, 25]] * 40, [1] * 40)
    n_tensors = len(t.tensors())
    with pytest.raises(PromptError, match="would have 70 points"):
        t.add_points(1, [[21, 25]] * 30, [1] * 30, clear_old_points=False)
    assert len(t.tensors()) == n_tensors
    t.add_points(1, [[21, 25]] * 24, [1] * 24, clear_old_points=False)  # 64: still fine
