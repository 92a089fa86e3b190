"""samtrack vs Meta's SAM2VideoPredictor on causal sessions: torch.equal on every frame's logits."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import make_model
from tests.reference import Prompt, compare, run_meta, run_samtrack
from tracker import Tracker


def _box_mask(h=96, w=120, x0=8, y0=12, x1=32, y1=40) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


CLICK = Prompt(at=0, obj=1, points=((20, 25),), labels=(1,))
SCENARIOS = {
    "click": [CLICK],
    "box": [Prompt(at=0, obj=1, box=(6, 10, 34, 42))],
    "box_and_click": [Prompt(at=0, obj=1, box=(6, 10, 34, 42), points=((20, 25),), labels=(1,))],
    "mask": [Prompt(at=0, obj=1, mask=_box_mask())],
    "pos_neg_clicks": [Prompt(at=0, obj=1, points=((20, 25), (90, 60)), labels=(1, 0))],
    "second_object_later": [CLICK, Prompt(at=8, obj=2, points=((95, 58),), labels=(1,))],
    "correction_latest": [CLICK, Prompt(at=10, obj=1, points=((40, 30), (5, 5)), labels=(1, 0))],
    "correction_accumulated": [
        CLICK,
        Prompt(at=10, obj=1, points=((40, 30),), labels=(1,)),
        Prompt(at=10, obj=1, points=((5, 5),), labels=(0,), clear_old_points=False),
    ],
    "correction_past_frame": [CLICK, Prompt(at=14, frame=10, obj=1, points=((40, 30),), labels=(0,))],
    "new_object_past_frame": [CLICK, Prompt(at=12, frame=9, obj=2, points=((90, 58),), labels=(1,))],
    "mask_correction_latest": [CLICK, Prompt(at=6, obj=1, mask=_box_mask(x0=14, y0=18, x1=40, y1=46))],
    "two_objects_same_frame": [CLICK, Prompt(at=0, obj=7, box=(80, 40, 115, 80))],
}


# Absent objects take the same code paths with other values: in the slow set, present ones in the fast set. So do
# variants of a path the fast set already takes (more clicks, a box with clicks, a correction on the latest frame).
FAST = {"click", "box", "mask", "correction_accumulated", "correction_past_frame", "new_object_past_frame"}


@pytest.mark.parametrize("present", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["present", "absent"])
@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in SCENARIOS])
def test_bit_exact_vs_meta(name, present, video):
    folder, frames = video
    prompts = SCENARIOS[name]
    model = make_model(present=present)
    ref = run_meta(model, folder, len(frames), prompts)
    ours = run_samtrack(Tracker.from_sam2(model, precision="fp32"), frames, prompts)
    assert len(ours) == len(frames)
    assert compare(ours, ref) == []
    if present:  # the scenario really exercised present objects
        assert any(o.max() > 0 for f in ours.values() for o in f.values())


# More conditioning frames than the cap M: corrections become conditioning frames and old ones are
# evicted from the bank; the reference is Meta with max_cond_frames_in_attn=M, which keeps them all.
COND_PROMPTS = [Prompt(at=0, obj=1, points=((20, 25),), labels=(1,))] + [
    Prompt(at=t, obj=1, points=((30 + t, 20 + t // 2),), labels=(1,)) for t in (3, 6, 9, 12, 15)
]


@pytest.mark.slow
@pytest.mark.parametrize("present", [True, False], ids=["present", "absent"])
@pytest.mark.parametrize("cap", [2, 3])
def test_more_cond_frames_than_cap(cap, present, long_video):
    folder, frames = long_video
    model = make_model(present=present, max_cond_frames_in_attn=cap, add_all_frames_to_correct_as_cond=True)
    ref = run_meta(model, folder, len(frames), COND_PROMPTS)
    # small window: evictions happen within 40 frames
    tracker = Tracker.from_sam2(model, feature_window=2, precision="fp32")
    ours = run_samtrack(tracker, frames, COND_PROMPTS)
    assert compare(ours, ref) == []
    assert tracker._banks[1].cond_dropped > 0, "the scenario must evict conditioning frames"


@pytest.mark.slow
def test_unlimited_model_capped_bank_is_exact_up_to_cap(long_video):
    """Model attends to all conditioning frames (-1); the bank cap (8 > 6 frames used) changes nothing."""
    folder, frames = long_video
    model = make_model(add_all_frames_to_correct_as_cond=True)
    assert model.max_cond_frames_in_attn == -1
    ref = run_meta(model, folder, len(frames), COND_PROMPTS)
    ours = run_samtrack(Tracker.from_sam2(model, feature_window=2, precision="fp32"), frames, COND_PROMPTS)
    assert compare(ours, ref) == []


@pytest.mark.parametrize("present", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["present", "absent"])
def test_memory_temporal_stride_2(present, long_video):
    folder, frames = long_video
    prompts = [CLICK, Prompt(at=20, obj=1, points=((50, 40),), labels=(1,))]
    model = make_model(present=present, memory_temporal_stride_for_eval=2)
    ref = run_meta(model, folder, len(frames), prompts)
    tracker = Tracker.from_sam2(model, feature_window=2, precision="fp32")
    assert tracker.options.memory_horizon == 15
    ours = run_samtrack(tracker, frames, prompts)
    assert compare(ours, ref) == []


def test_options_override_model_settings(video):
    """An option passed to the tracker wins over the model's value; the model itself is untouched."""
    folder, frames = video
    model = make_model()
    tracker = Tracker.from_sam2(model, memory_temporal_stride_for_eval=2, max_cond_frames=4, precision="fp32")
    assert tracker.options.memory_temporal_stride_for_eval == 2 and tracker.options.max_cond_frames == 4
    assert model.memory_temporal_stride_for_eval == 1
    ours = run_samtrack(tracker, frames, [CLICK])
    model.memory_temporal_stride_for_eval = 2  # the same session through Meta with the setting changed
    assert compare(ours, run_meta(model, folder, len(frames), [CLICK])) == []


def test_harness_detects_a_bank_of_six(video, monkeypatch):
    """The comparison is sensitive: a bank keeping only the last 6 frames (as public forks do) diverges."""
    folder, frames = video
    model = make_model()
    ref = run_meta(model, folder, len(frames), [CLICK])
    monkeypatch.setattr(Tracker, "_oldest_kept", lambda self: self._latest - 5)
    ours = run_samtrack(Tracker.from_sam2(model, precision="fp32"), frames, [CLICK])
    problems = compare(ours, ref)
    assert problems and all(int(p.split()[1].rstrip(":")) >= 8 for p in problems), problems
