"""The motion thread of a stream: every frame in order into the carrier (tracker/motion/), the frames the model
does not take answered at once with the newest model masks moved to them, and each model result (a seed) taken
as it comes. Nothing here waits for the model, and the model never waits for this thread: frames and seeds reach
it through one bounded inbox (the oldest frame goes when it is full, counted as unanswered)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2

from ..core.results import FrameResult
from ..motion.carrier import RING_FRAMES, Carrier
from .feed import Numbered

log = logging.getLogger(__name__)

# Frames waiting for the motion thread: it answers in a few ms a frame, so a backlog means the CPU is starved;
# past this, the oldest waiting frame goes unanswered rather than every answer coming later and later.
INBOX_FRAMES = 8


@dataclass(frozen=True)
class _Seed:
    result: FrameResult
    seed: int  # its number among the stream's seeds (a recording says when each was taken)
    capture_ns: int | None = None  # when its frame was captured
    forget: bool = False  # objects removed (result.objects: the ones kept)


@dataclass(frozen=True)
class Carried:
    """A frame the motion thread took: the carried result when it answered it (None: the model answers it), the
    key frame's capture time and the time the carrying took."""

    item: Numbered
    result: FrameResult | None
    key_capture_ns: int | None
    motion_ms: float


class Motion(Protocol):
    """What answers a stream's frames between key frames: the daemon's MotionThread, or a replay's."""

    answered: int
    unanswered: int

    def seed(self, result: FrameResult, seed: int, capture_ns: int | None = None) -> None: ...
    def keep_only(self, result: FrameResult, seed: int) -> None: ...
    def stop(self) -> None: ...


class MotionThread:
    """Answers frames by motion for one stream; `on_answer(carried)` sees every frame, in order, with its answer
    when it has one, and `on_seeded(seed, frame)` each seed as it is taken (called on this thread: they publish
    and record)."""

    def __init__(self, name: str, on_answer: Callable[[Carried], None],
                 on_seeded: Callable[[int, int], None] = lambda seed, frame: None, ring: int = RING_FRAMES):
        self.name = name
        self._on_answer = on_answer
        self._on_seeded = on_seeded
        self._ring = ring
        self._carrier: Carrier | None = None
        self._inbox: deque[Numbered | _Seed] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._pending: _Seed | None = None  # a seed for a frame not added yet (the model got there first)
        self.unanswered = 0  # frames that went unanswered: dropped from a full inbox, or failed
        self.answered = 0
        self._thread = threading.Thread(target=self._run, name=f"motion-{name}", daemon=True)
        self._thread.start()

    def frame(self, item: Numbered) -> None:
        """The next frame of the stream (from the feed's reader)."""
        with self._cond:
            frames = sum(isinstance(x, Numbered) for x in self._inbox)
            if frames >= INBOX_FRAMES:
                oldest = next(x for x in self._inbox if isinstance(x, Numbered))
                self._inbox.remove(oldest)
                self.unanswered += oldest.answered
            self._inbox.append(item)
            self._cond.notify()

    def seed(self, result: FrameResult, seed: int, capture_ns: int | None = None) -> None:
        """A model result, the stream's seed-th (its frame captured at `capture_ns`): its masks are carried from now
        on (an older seed not taken yet is replaced)."""
        self._put_seed(_Seed(result, seed, capture_ns))

    def keep_only(self, result: FrameResult, seed: int) -> None:
        """Objects removed or reset: only those in `result` (the newest model result) are carried from now on."""
        self._put_seed(_Seed(result, seed, forget=True))

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(2.0)

    def _put_seed(self, seed: _Seed) -> None:
        with self._cond:
            for old in [x for x in self._inbox if isinstance(x, _Seed) and not x.forget and not seed.forget]:
                self._inbox.remove(old)
            self._inbox.append(seed)
            self._cond.notify()

    def _run(self) -> None:
        cv2.setNumThreads(1)  # one core's worth: the model keeps the others
        while True:
            with self._cond:
                while not self._inbox and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                item = self._inbox.popleft()
            try:
                if isinstance(item, Numbered):
                    self._frame(item)
                elif item.forget:
                    if self._carrier is not None:
                        self._carrier.forget(set(self._carrier_ids()) - set(item.result.objects))
                    self._on_seeded(item.seed, item.result.frame_index)
                else:
                    self._seed(item)
            except Exception:  # a frame the carrier cannot take must not end answering
                log.exception("stream %r: carrying masks failed", self.name)
                if isinstance(item, Numbered):
                    self.unanswered += item.answered

    def _carrier_ids(self) -> list[int]:
        return list(self._carrier.carried) if self._carrier is not None else []

    def _frame(self, item: Numbered) -> None:
        t0 = time.perf_counter()
        h, w = item.frame.height, item.frame.width
        if self._carrier is None or (self._carrier.width, self._carrier.height) != (w, h):
            self._carrier = Carrier(w, h, self._ring)  # the first frame, or the camera changed its size
        self._carrier.add(item.number, item.frame.capture_ns, item.frame.image)
        if self._pending is not None and self._pending.result.frame_index <= item.number:
            self._seed(self._pending)
        result = None
        if item.answered:  # else the model answers this one
            result = self._carrier.carry()
            self.answered += 1
        self._on_answer(Carried(item, result, self._carrier.key_capture_ns, (time.perf_counter() - t0) * 1e3))

    def _seed(self, seed: _Seed) -> None:
        c = self._carrier
        if c is None or c.newest is None or seed.result.frame_index > c.newest:
            self._pending = seed  # its frame is still on its way here
            return
        self._pending = None
        c.seed(seed.result, seed.capture_ns)
        self._on_seeded(seed.seed, seed.result.frame_index)
