"""The tracker's state stays constant in tensor count and bytes while objects are added, corrected and removed.

Every bound of the state is a window counted in frames (the feature window, the memory horizon, the
conditioning cap), so the state repeats once the prompt schedule has repeated past the longest of them: the
steady state is reached within a few periods, and several identical periods after it show it stays."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipelines.synthetic import box_of_first_shape, moving_shapes_frame
from tests.conftest import make_model
from tracker import Tracker

# The prompt schedule repeats every PERIOD frames, longer than the feature window (8) plus the memory horizon
# (15), so each period starts from the same state once warmed up.
PERIOD = 30
WARM_PERIODS = 4  # object 1 gains 3 conditioning frames a period: the cap of 8 is reached in the third
STEADY_PERIODS = 6  # identical states measured after warm-up


@pytest.mark.slow
def test_state_is_bounded_with_prompts_and_objects_coming_and_going():
    model = make_model(image_size=64)
    # Corrections become conditioning frames, so the conditioning cap is exercised too.
    tracker = Tracker.from_sam2(model, backend="torch", add_all_frames_to_correct_as_cond=True, feature_window=8)
    h, w = 48, 64
    samples = []
    deadline = time.monotonic() + 600  # a bound on a stuck run, far above the ~30 s it takes on a quiet machine
    for i in range((WARM_PERIODS + STEADY_PERIODS) * PERIOD):
        assert time.monotonic() < deadline, "bounded-state run took too long"
        tracker.step(moving_shapes_frame(i % 50, h, w))
        phase, cycle = i % PERIOD, i // PERIOD
        if i == 0:
            tracker.add_box(1, box_of_first_shape(0, h, w))
        elif phase == 3:  # a new object for this cycle
            tracker.add_points(100 + cycle, [[w - 12, h // 2 + 5]], [1])
        elif phase in (6, 12, 18):  # corrections on object 1 (new conditioning frames)
            tracker.add_points(1, [[20, 20], [2, 2]], [1, 0])
        elif phase == 14:  # correction on a past frame in the window, then re-tracking
            tracker.add_points(100 + cycle, [[w - 14, h // 2 + 4]], [1], frame_index=i - 5)
        elif phase == 15:
            m = np.zeros((h, w), bool)
            m[10:30, 10:30] = True
            tracker.add_mask(200 + cycle, m)
        elif phase == 21:
            tracker.remove_object(100 + cycle)
        elif phase == 24:
            tracker.remove_object(200 + cycle)
        if phase == PERIOD - 1:
            samples.append((len(tracker.tensors()), tracker.held_bytes()))
    assert tracker.objects == [1]
    steady = samples[WARM_PERIODS:]
    assert len(steady) == STEADY_PERIODS and len(set(steady)) == 1, f"tracker state grows: {samples}"
    assert samples[0] != steady[0]  # the warm-up did grow the state: the measurement sees growth when there is
    assert len(tracker._banks[1].cond) <= tracker.options.max_cond_frames
    assert tracker._banks[1].cond_dropped > 0
    n_keep = tracker.options.feature_window + tracker.options.memory_horizon
    assert len(tracker._banks[1].non_cond) <= n_keep
    assert len(tracker.window) == tracker.options.feature_window


def test_small_caps_hold_from_the_first_frames():
    """The caps with small values, cheaply (the fast subset and the mutation check lean on it): 2 conditioning
    frames, a horizon of 6 frames, a window of 2, under corrections that become conditioning frames every third
    frame. No cap is ever exceeded (conditioning frames older than the horizon: the 2 most recent at most; those
    within it serve as recent memory), conditioning frames are evicted, and once the caps are full the state
    repeats with the schedule."""
    model = make_model(image_size=64)
    tracker = Tracker.from_sam2(model, backend="torch", add_all_frames_to_correct_as_cond=True, feature_window=2,
                                max_cond_frames=2, max_obj_ptrs_in_encoder=2)
    opts = tracker.options
    assert opts.memory_horizon == 6  # 1 + stride 1 x (7 memories - 2); pointers reach back only 1 frame
    h, w = 48, 64
    samples = []
    for i in range(15):
        tracker.step(moving_shapes_frame(i, h, w))
        if i == 0:
            tracker.add_box(1, box_of_first_shape(0, h, w))
        elif i % 3 == 0:
            tracker.add_points(1, [[20, 20], [2, 2]], [1, 0])
        bank, span = tracker._banks[1], opts.feature_window + opts.memory_horizon  # frames a next step may read
        assert len([t for t in bank.cond if t <= i - span]) <= opts.max_cond_frames, (i, list(bank.cond))
        assert len(bank.non_cond) <= span, (i, list(bank.non_cond))
        assert len(tracker.window) <= opts.feature_window, i
        if i % 3 == 2:
            samples.append((len(tracker.tensors()), tracker.held_bytes()))
    assert tracker._banks[1].cond_dropped > 0
    assert len(set(samples[2:])) == 1, f"tracker state grows: {samples}"  # full after 2 + 6 frames
