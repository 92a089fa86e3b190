"""Frame numbers apart from the model's timeline (tracker/core/timeline.py): key frames numbered with gaps give
exactly the results of the same frames numbered one after another (Meta's predictor on the key frames' video), a
frame answered by motion joins the timeline when prompted, and states keep both counters."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import make_model
from tracker import FrameWindowError, Tracker
from tracker.core.state import decode_state, encode_state, read_meta

IDENTITY = {"model": "sam2.1_hiera_t", "weights_sha256": "w" * 64, "image_size": 64, "precision": "fp32",
            "stream": "cam", "samtrack": "test"}


@pytest.fixture(scope="module")
def model():
    return make_model(image_size=64)


def _equal(a, b) -> bool:
    return a.objects.keys() == b.objects.keys() and all(
        torch.equal(a.objects[i].low_res, b.objects[i].low_res) for i in a.objects)


def test_key_frames_numbered_with_gaps_track_as_the_key_frames_video(model, video):
    """Numbers 0, 3, 5, 9, ... (the frames between answered elsewhere) give the results, bit for bit, of the same
    frames numbered 0, 1, 2, 3, ...; prompts name the numbers, results carry them."""
    _, frames = video
    numbers = [0, 3, 5, 9, 10, 14, 17, 20, 21, 23]
    gaps, plain = Tracker.from_sam2(model, precision="fp32"), Tracker.from_sam2(model, precision="fp32")
    for k, n in enumerate(numbers):
        a, b = gaps.step(frames[n], number=n), plain.step(frames[n])
        if k == 0:
            a, b = gaps.add_box(1, [20, 15, 70, 60]), plain.add_box(1, [20, 15, 70, 60])
        if k == 4:  # a correction on a past key frame, named by its number
            a = gaps.add_points(1, [[40, 30]], [1], frame_index=numbers[2])
            b = plain.add_points(1, [[40, 30]], [1], frame_index=2)
            assert (a.frame_index, b.frame_index) == (numbers[2], 2)
            a, b = gaps.result(), plain.result()
        assert a.frame_index == n and b.frame_index == k
        assert _equal(a, b), n
    assert gaps.window == numbers[-len(gaps.window):]
    with pytest.raises(FrameWindowError, match="not in the feature window"):
        gaps.add_points(2, [[10, 10]], [1], frame_index=22)  # between key frames, never given to the model
    with pytest.raises(ValueError, match="numbers increase"):
        gaps.step(frames[0], number=23)


def test_a_frame_joins_the_timeline_where_it_belongs(model, video):
    """insert_frame puts a frame between two key frames as if the model had run on it: the objects known before it
    are tracked on it as a model frame after the earlier key frame would be, and a new object prompted there is
    re-tracked over the later key frames exactly as on a timeline that always held the frame."""
    _, frames = video
    joined, always = Tracker.from_sam2(model, precision="fp32"), Tracker.from_sam2(model, precision="fp32")
    joined.step(frames[0], number=0)
    joined.add_box(1, [20, 15, 70, 60])
    for n in (5, 10):
        joined.step(frames[n], number=n)
    inserted = joined.insert_frame(3, frames[3])
    assert joined.window == [0, 3, 5, 10]
    always.step(frames[0], number=0)
    always.add_box(1, [20, 15, 70, 60])
    reference = always.step(frames[3], number=3)
    assert inserted.frame_index == 3 and _equal(inserted, reference)  # object 1 on the joined frame
    for n in (5, 10):
        always.step(frames[n], number=n)
    a = joined.add_points(2, [[90, 60]], [1], frame_index=3)
    b = always.add_points(2, [[90, 60]], [1], frame_index=3)
    assert torch.equal(a.objects[2].low_res, b.objects[2].low_res)
    for n in (5, 10):  # object 2 re-tracked over the later key frames, from the same memory at the same positions
        assert torch.equal(joined.result(n).objects[2].low_res, always.result(n).objects[2].low_res), n
    nxt_a, nxt_b = joined.step(frames[12], number=12), always.step(frames[12], number=12)
    assert torch.equal(nxt_a.objects[2].low_res, nxt_b.objects[2].low_res)


def test_insert_frame_refuses_frames_outside_the_window_and_model_frames(model, video):
    _, frames = video
    t = Tracker.from_sam2(model, precision="fp32", feature_window=3)
    with pytest.raises(FrameWindowError):
        t.insert_frame(1, frames[1])  # no frame yet
    for n in (0, 4, 8, 12):
        t.step(frames[n], number=n)
    assert t.window == [4, 8, 12]
    for n in (2, 12, 13):  # before the window, the newest frame, after it
        with pytest.raises(FrameWindowError):
            t.insert_frame(n, frames[n])
    with pytest.raises(FrameWindowError, match="already a model frame"):
        t.insert_frame(8, frames[8])
    t.insert_frame(6, frames[6])
    assert t.window == [6, 8, 12]  # the window keeps its size: the oldest frame went


def test_a_state_keeps_numbers_and_positions(model, video):
    """A snapshot after gaps in the numbering: a restore goes on with the numbers and with the model's own timeline
    (positions), so the conditioning memories keep their distance to the next frame."""
    _, frames = video
    live = Tracker.from_sam2(model, precision="fp32")
    for k, n in enumerate((0, 4, 9, 15)):
        live.step(frames[n], number=n)
        if k == 1:
            live.add_box(1, [20, 15, 70, 60])
    state = live.snapshot()
    assert (state.next_frame, state.position) == (16, 4)
    meta, tensors = read_meta(encode_state(state, IDENTITY))
    assert (meta["next_frame"], meta["next_position"]) == (16, 4)
    restored = decode_state(meta, tensors, torch.device("cpu"))
    back = Tracker.from_sam2(model, precision="fp32")
    back.restore(restored)
    assert back.latest_frame == 15
    a = back.step(frames[18], number=18)
    assert a.frame_index == 18 and set(a.objects) == {1}
    # The conditioning memory (position 1) is three positions before the next frame (position 4), as on the live
    # tracker: the same as a tracker whose numbers never left its positions, and not what a restore that took the
    # numbers for positions (15 apart) computes.
    same = Tracker.from_sam2(model, precision="fp32")
    same.restore(dataclasses.replace(restored, next_frame=4))
    wrong = Tracker.from_sam2(model, precision="fp32")
    wrong.restore(dataclasses.replace(restored, next_position=None))
    assert torch.equal(a.objects[1].low_res, same.step(frames[18], number=4).objects[1].low_res)
    assert not torch.equal(a.objects[1].low_res, wrong.step(frames[18], number=18).objects[1].low_res)
