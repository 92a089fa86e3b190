"""The daemon's side of answering every frame, one piece at a time: the feed's numbering and offering
(daemon/feed.py), the motion thread's inbox, seeds and removals (daemon/carrying.py), a prompt on a frame answered
by motion (Stream.model_frame), and a recorded session read in its threads' order (recording/keyframes.py). A
queue stands in for the camera; the tracker, the carrier and the threads are the real ones."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

from pipelines.base import StreamInfo
from pipelines.frame import Frame
from pipelines.scenes import Scene
from pipelines.spec import parse_source
from tests.conftest import make_model
from tracker import Tracker
from tracker.core.results import FrameResult, ObjectResult
from tracker.daemon.carrying import INBOX_FRAMES, MotionThread
from tracker.daemon.feed import FrameFeed, Numbered
from tracker.daemon.stream import Stream
from tracker.errors import PromptError
from tracker.motion.warp import box_of
from tracker.recording.keyframes import KeyFrameCallbacks, KeyFrames

WAIT_S = 10.0  # any wait below is for a thread that needs milliseconds


class QueueCamera:
    """A live source whose frames the test hands over (`show`)."""

    def __init__(self, width: int = 160, height: int = 120):
        self.spec = parse_source("test:")
        self.info = StreamInfo(width, height, 15.0, "queue")
        self.dropped = self.reconnects = 0
        self.connected, self.last_error = True, None
        self._frames: queue.Queue = queue.Queue()
        self._count = 0

    def start(self):
        return self.info

    def read(self, timeout: float = 1.0):
        try:
            return self._frames.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self) -> None:
        pass

    def show(self, image: np.ndarray) -> None:
        self._frames.put(Frame(self._count, None, time.monotonic_ns(), image))
        self._count += 1


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"waited {WAIT_S} s for {what}"
        time.sleep(0.005)


def _frame(i: int) -> np.ndarray:
    return np.full((120, 160, 3), i % 250, np.uint8)


def test_the_feed_numbers_every_frame_keeps_the_newest_and_offers_the_newest():
    cam, seen = QueueCamera(), []
    feed = FrameFeed(cam, 40, seen.append, kept=3)
    feed.start()
    try:
        for i in range(5):
            cam.show(_frame(i))
        _until(lambda: len(seen) == 5, "five frames")
        assert [x.number for x in seen] == [40, 41, 42, 43, 44] and feed.next_number == 45
        assert all(x.answered for x in seen)  # nobody waited for them: motion answers them
        assert feed.kept_numbers() == [42, 43, 44] and feed.kept(41) is None
        item = feed.read(0.0)
        assert item.number == 44 and feed.read(0.0) is None  # the newest, once
        got: list = []
        for step_ms in (500.0, 5.0):  # a slow model's steps, then a fast one's
            for _ in range(16):
                feed.stepped(step_ms)
            reader = threading.Thread(target=lambda: got.append(feed.read(WAIT_S)))
            reader.start()
            _until(lambda: feed._waiting == 1, "the reader to wait")
            cam.show(_frame(len(got)))
            reader.join(WAIT_S)
        # the waiting model takes the frame either way; motion answers it first only for the slow model
        assert [(x.number, x.answered) for x in got] == [(45, True), (46, False)]
        cam.show(_frame(6))
        _until(lambda: feed.kept_numbers()[-1] == 47, "frame 47")
        feed.taken(47)  # a prompt ran the model on it
        assert feed.read(0.0) is None
        cam.show(_frame(7))
        _until(lambda: feed.kept_numbers()[-1] == 48, "frame 48")
        feed.renumber(100)  # a state import: older numbers are neither offered nor kept
        assert feed.read(0.0) is None and feed.kept_numbers() == [] and feed.next_number == 100
    finally:
        feed.stop()


def test_a_frame_left_to_a_waiting_model_is_not_replaced_before_it_wakes():
    """A fast model waits in read(); two frames come before it wakes (a busy CPU): the first stays the model's, the
    second is motion's, and neither is left without an answer (it was replaced, unanswered, once)."""
    seen, got = [], []
    feed = FrameFeed(QueueCamera(), 10, seen.append, kept=4)  # not started: the test hands frames over itself
    for _ in range(16):
        feed.stepped(5.0)  # a model faster than MODEL_FIRST_MS: a frame it waits for is its own
    reader = threading.Thread(target=lambda: got.append(feed.read(WAIT_S)))
    reader.start()
    _until(lambda: feed._waiting == 1, "the model to wait")
    with feed._cond:  # the model cannot wake until both frames came (the lock is reentrant: the feed's own)
        for i in range(2):
            feed._arrived(Frame(i, None, time.monotonic_ns(), _frame(i)))
    reader.join(WAIT_S)
    assert [(x.number, x.answered) for x in seen] == [(10, False), (11, True)]
    assert [x.number for x in got] == [10] and feed.read(0.0) is None


def _seed_of(frame: int, masks: dict[int, np.ndarray]) -> FrameResult:
    return FrameResult(frame, {i: ObjectResult(i, 5.0, box_of(m), int(m.sum()), np.packbits(m.reshape(-1)),
                                               m.shape[0], m.shape[1], None) for i, m in masks.items()})


def test_the_motion_thread_answers_seeds_forgets_and_skips_a_backlog():
    scene = Scene("translate", 320, 240)
    answers, seeded, gate = [], [], threading.Event()
    gate.set()

    def on_answer(c):
        gate.wait(WAIT_S)
        answers.append(c)

    t = MotionThread("t", on_answer, lambda seed, frame: seeded.append((seed, frame)))
    try:
        item = lambda i, answered=True: Numbered(i, Frame(i, None, time.monotonic_ns(), scene.frame(i).image),  # noqa: E731
                                                 answered)
        t.seed(_seed_of(2, scene.frame(2).masks), 1)  # before its frame arrives: held until it does
        for i in range(5):
            t.frame(item(i, answered=i != 3))  # frame 3: the model answers it
        _until(lambda: len(answers) == 5, "five frames")
        assert seeded == [(1, 2)]
        assert [a.result is not None for a in answers] == [True, True, True, False, True]
        assert answers[1].result.objects == {} and answers[1].result.key_frame is None  # nothing carried yet
        assert answers[4].result.key_frame == 2 and set(answers[4].result.objects) == {1, 2, 3}
        t.keep_only(_seed_of(4, {k: m for k, m in scene.frame(4).masks.items() if k != 2}), 2)
        t.frame(item(5))
        _until(lambda: len(answers) == 6, "frame 5")
        assert set(answers[5].result.objects) == {1, 3} and seeded[-1] == (2, 4)
        # a backlog: the answers block until released; the oldest waiting frames are skipped, not carried
        gate.clear()
        for i in range(6, 6 + INBOX_FRAMES + 4):
            t.frame(item(i))
        before = t.unanswered
        gate.set()
        _until(lambda: len(answers) == 6 + INBOX_FRAMES + 4, "the backlog")
        skipped = [a.item.number for a in answers[6:] if a.skipped]
        assert skipped and all(a.result is None for a in answers[6:] if a.skipped)
        assert before == len(skipped) and [a.item.number for a in answers] == list(range(6 + INBOX_FRAMES + 4))
    finally:
        t.stop()


@pytest.fixture(scope="module")
def model():
    return make_model(image_size=64)


def test_a_refused_prompt_leaves_the_timeline_as_it_was(model):
    """A prompt on a frame answered by motion is checked before the model runs there: refused, the model's
    timeline is untouched; accepted, the frame joins it (a newer frame is stepped and not offered again)."""
    cam = QueueCamera()
    tracker = Tracker.from_sam2(model, precision="fp32")
    st = Stream("s", cam, tracker, between_key_frames="motion")
    st.carry_between_key_frames(lambda carried: None)
    st.feed.start()
    try:
        for i in range(4):
            cam.show(_frame(i * 40))
        _until(lambda: st.feed.kept_numbers() == [0, 1, 2, 3], "four frames")
        for n in (0, 2):
            tracker.step(st.feed.kept(n).image, number=n)
        tracker.add_box(1, [20, 20, 90, 80], frame_index=0)

        def refuse(w, h):
            tracker.check_prompt(1, w, h, points=[[500, 10]], labels=[1])

        with pytest.raises(PromptError):
            st.model_frame(1, refuse)
        assert tracker.window == [0, 2]
        assert st.model_frame(1, lambda w, h: tracker.check_prompt(1, w, h, points=[[50, 50]], labels=[1])) == 1
        assert tracker.window == [0, 1, 2]
        assert st.model_frame(None, lambda w, h: None) == 3  # "latest": the newest frame received
        assert tracker.window == [0, 1, 2, 3] and st.read(0.0) is None  # not offered to the model again
    finally:
        st.stop_threads()


def test_a_recorded_session_is_read_in_its_threads_order():
    """Key frames come to the model after their pictures; a command is served in the tracking thread's order; a
    skipped frame is kept but not carried; seeds are taken where the motion thread took them."""
    records = [
        {"kind": "key", "frame": 1},  # the tracking thread took frame 1 before the motion thread had it
        {"kind": "frame", "frame": 0, "capture_ns": 0, "source_index": 0, "pts_ns": None},
        {"kind": "frame", "frame": 1, "capture_ns": 1, "source_index": 1, "pts_ns": None},
        {"kind": "result", "frame": 1, "source": "model", "key_frame": 1, "objects": {}},
        {"kind": "command", "op": "add_points", "after_frame": 1},
        {"kind": "skipped", "frame": 2},
        {"kind": "frame", "frame": 2, "capture_ns": 2, "source_index": 2, "pts_ns": None},
        {"kind": "seeded", "seed": 1, "frame": 1},
        {"kind": "frame", "frame": 3, "capture_ns": 3, "source_index": 3, "pts_ns": None},
        {"kind": "result", "frame": 3, "source": "motion", "key_frame": 1, "objects": {}},
        {"kind": "key", "frame": 3},
    ]
    events, remaining = [], iter(records)
    keys = KeyFrames(lambda: next(remaining, None),
                     lambda r: Frame(r["source_index"], None, 0, np.zeros((2, 2, 3), np.uint8)),
                     KeyFrameCallbacks(frame=lambda n, f: events.append(("carry", n)),
                                       seeded=lambda r: events.append(("seeded", r["seed"])),
                                       expected=lambda r: events.append(("expected", r["source"], r["frame"])),
                                       lost=lambda r: events.append(("lost", r["frame"]))),
                     lambda r: events.append((r["kind"], r.get("frame", r.get("op")))))
    out = []
    while keys.read() is not None:
        out.append(keys.last_number)
        events.append(("model", keys.last_number))
    assert out == [1, 3] and keys.barrier is None
    # (the motion answer of frame 3 is read once nothing of the tracking thread's is left: compared then)
    assert events == [("carry", 0), ("carry", 1), ("model", 1), ("result", 1), ("command", "add_points"),
                      ("seeded", 1), ("carry", 3), ("model", 3), ("expected", "motion", 3)]
    assert keys.kept(2) is not None  # skipped: kept for prompts, never carried
