"""The daemon answering every frame (`[tracking] between_key_frames`): a real subprocess on a live source, real
sockets. Slow configurations (1024 px on a CPU: seconds a step; 512 px: most of a second) against a 10 fps camera,
so that most frames can only be answered by motion."""

from __future__ import annotations

import time

import pytest

from tests.daemon_helpers import start_daemon
from tracker.client import Answers, Client, RemoteError, Result, Subscriber

pytestmark = pytest.mark.slow
SOURCE = "test:?width=160&height=120&fps=10"


@pytest.fixture(scope="module")
def slow():
    d = start_daemon("--threads", "2", "--backend", "torch", "--motion-frames-kept", "100", motion=True,
                     image_size=1024, source=SOURCE, wait_s=600)
    yield d
    assert d.stop(30) == 0


def _collect(sub: Subscriber, seconds: float) -> list[Result]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        r = sub.recv(2.0)
        if isinstance(r, Result):
            out.append(r)
    return out


def test_a_slow_model_answers_every_frame_of_a_faster_camera(slow):
    """Every frame gets an answer, in a few ms, most of them by motion (source, key_frame, age_ms); the model's
    later answer of a frame it took is a revision of it."""
    with Client(slow.commands, timeout=300) as c, Subscriber(slow.results, "test") as sub:
        prompted = c.add_box(1, [20, 20, 90, 80])["frame"]
        results = _collect(sub, 6.0)
        stats = c.stats()
    firsts = {}
    for r in results:
        firsts.setdefault(r.frame, r)
    numbers = sorted(firsts)
    assert len(numbers) >= 30  # ~60 at 10 fps; frames, not key frames
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), "a frame went unanswered"
    indices = sorted(r.header["source_index"] for r in firsts.values())
    assert indices == list(range(indices[0], indices[0] + len(indices))), "a camera frame went unanswered"
    moved = [r for r in firsts.values() if r.source == "motion" and r.key_frame is not None]
    assert len(moved) >= 0.8 * len(numbers)
    assert all(r.key_frame < r.frame and r.header["age_ms"] > 0 for r in moved)
    carried = [r for r in moved if r.key_frame >= prompted]  # (answers computed while the prompt ran have not)
    assert carried and all(1 in r.masks for r in carried)
    assert all(r.header["timings_ms"]["motion"] < 1000 for r in moved)
    assert all(r.source == "model" for r in results if r.revision >= 1)  # a frame answered again: by the model
    assert stats["motion_frames"] >= len(moved) and stats["between_key_frames"] == "motion"
    assert stats["frame_errors"] == 0  # (a prompt on the newest frame once made the model step it twice)
    assert stats["answered_fps"] > 3 * max(stats["fps"], 0.01)


@pytest.fixture(scope="module")
def slower_than_the_camera():
    d = start_daemon("--threads", "2", "--backend", "torch", "--motion-frames-kept", "100", motion=True,
                     image_size=512, source=SOURCE, wait_s=600)
    yield d
    assert d.stop(30) == 0


def test_a_prompt_on_a_frame_answered_by_motion_runs_the_model_there(slower_than_the_camera):
    d = slower_than_the_camera
    with Client(d.commands, timeout=300) as c, Subscriber(d.results, "test") as sub:
        c.reset()
        c.add_box(1, [20, 20, 90, 80])
        moved = [r for r in _collect(sub, 3.0) if r.source == "motion"][-1]  # the newest seen
        window = c.ping()["window"]
        assert window[0] <= moved.frame <= window[1]
        reply = c.add_points(2, [[120, 60]], [1], frame=moved.frame)
        assert reply["frame"] == moved.frame and reply["object"]["id"] == 2
        answers = Answers()
        for r in _collect(sub, 3.0):
            answers.add(r)
        revision = answers.get(moved.frame)
        assert revision is not None and revision.source == "model" and revision.revision >= 1
        assert {1, 2} <= set(revision.masks)
        assert c.stats()["frame_errors"] == 0
        with pytest.raises(RemoteError) as e:  # long gone: only the newest frames answered by motion are kept
            c.add_points(2, [[120, 60]], [1], frame=max(0, c.ping()["window"][0] - 1))
        assert e.value.code == "frame_out_of_window"


def test_drop_answers_only_the_models_frames():
    """between_key_frames = "drop" behaves as before: the model's frames only, numbered one after another, the
    camera's other frames dropped and counted."""
    d = start_daemon("--threads", "2", "--backend", "torch", source=SOURCE, image_size=512, wait_s=600)
    try:
        with Client(d.commands, timeout=300) as c, Subscriber(d.results, "test") as sub:
            results, deadline = [], time.monotonic() + 120
            while len(results) < 3 and time.monotonic() < deadline:  # a step takes seconds
                results += _collect(sub, 2.0)
            stats = c.stats()
    finally:
        assert d.stop(30) == 0
    assert len(results) >= 3
    assert all(r.source == "model" and r.key_frame == r.frame and r.revision == 0 for r in results)
    frames = [r.frame for r in results]
    assert frames == list(range(frames[0], frames[0] + len(frames)))
    assert results[-1].header["dropped"] > results[0].header["dropped"]
    assert stats["motion_frames"] == 0 and stats["between_key_frames"] == "drop"
