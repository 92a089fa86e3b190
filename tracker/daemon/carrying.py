"""The motion thread of a stream: every frame in order into the carrier (tracker/motion/), the frames the model
does not take answered at once with the newest model masks moved to them, and each model result (a seed) taken
as it comes. Nothing here waits for the model, and the model never waits for this thread: frames and seeds reach
it through one bounded inbox.

When frames come faster than it answers them (a starved CPU), the oldest waiting frame is skipped: it is still
handed on (recorded, kept for prompts) but neither carried nor answered, counted as unanswered; past a hard bound
waiting frames are dropped altogether (lost to the recording too)."""

from __future__ import annotations

import dataclasses
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

# Frames waiting to be carried: the thread answers a frame in a few ms, so a backlog means the CPU is starved (or a
# seed's catch-up is long); past this the oldest waiting frame is skipped rather than every answer coming later.
INBOX_FRAMES = 8
# Frames waiting at all (skipped ones included, each holding its picture): past this the oldest is dropped.
INBOX_MAX = 64


@dataclass(frozen=True)
class _Seed:
    result: FrameResult
    seed: int  # its number among the stream's seeds (a recording says when each was taken)
    capture_ns: int | None = None  # when its frame was captured
    forget: bool = False  # objects removed (result.objects: the ones kept)


@dataclass(frozen=True)
class Carried:
    """A frame the motion thread took: the carried result when it answered it (None: the model answers it, or the
    frame was skipped), the key frame's capture time and the time the carrying took."""

    item: Numbered
    result: FrameResult | None
    key_capture_ns: int | None
    motion_ms: float
    skipped: bool = False  # not carried (a backlog): handed on for the recording and prompts only


class Motion(Protocol):
    """What answers a stream's frames between key frames: the daemon's MotionThread, or a replay's."""

    unanswered: int

    def seed(self, result: FrameResult, seed: int, capture_ns: int | None = None) -> None: ...
    def keep_only(self, result: FrameResult, seed: int) -> None: ...
    def renumbered(self, first_number: int) -> None: ...
    def stop(self) -> None: ...


class MotionThread:
    """Answers frames by motion for one stream. Called on this thread: `on_answer(carried)` with every frame, in
    order, and its answer when it has one; `on_seeded(seed, frame)` as each seed is taken; `on_dropped(item)` for a
    frame dropped from a full inbox (called on the caller's thread: the feed's reader)."""

    def __init__(self, name: str, on_answer: Callable[[Carried], None],
                 on_seeded: Callable[[int, int], None] = lambda seed, frame: None,
                 on_dropped: Callable[[Numbered], None] = lambda item: None, ring: int = RING_FRAMES):
        self.name = name
        self._on_answer, self._on_seeded, self._on_dropped = on_answer, on_seeded, on_dropped
        self._ring = ring
        self._carrier: Carrier | None = None
        self._inbox: deque[Numbered | _Seed] = deque()
        self._skip: set[int] = set()  # numbers of waiting frames to hand on without carrying
        self._cond = threading.Condition()
        self._stopped = False
        self._pending: _Seed | None = None  # a seed for a frame not added yet (the model got there first)
        self._floor = 0  # frames numbered below belong to a numbering a state import replaced: not answered
        self.unanswered = 0  # frames left without an answer: skipped, dropped, or their carrying failed
        # OpenCV's own thread pool would compete with the model's threads on every call. The setting is the
        # process's: the daemon's other OpenCV work (JPEG previews) runs on one thread too.
        cv2.setNumThreads(1)
        self._thread = threading.Thread(target=self._run, name=f"motion-{name}", daemon=True)
        self._thread.start()

    def frame(self, item: Numbered) -> None:
        """The next frame of the stream (from the feed's reader)."""
        dropped = None
        with self._cond:
            waiting = [x for x in self._inbox if isinstance(x, Numbered)]
            carried = [x for x in waiting if x.number not in self._skip]
            if len(carried) >= INBOX_FRAMES:
                self._skip.add(carried[0].number)
                self.unanswered += carried[0].answered
            if len(waiting) >= INBOX_MAX:
                dropped = waiting[0]
                self._inbox.remove(dropped)
                self.unanswered += dropped.answered and dropped.number not in self._skip
                self._skip.discard(dropped.number)
            self._inbox.append(item)
            self._cond.notify()
        if dropped is not None:
            self._on_dropped(dropped)

    def seed(self, result: FrameResult, seed: int, capture_ns: int | None = None) -> None:
        """A model result, the stream's seed-th (its frame captured at `capture_ns`): its masks are carried from now
        on (an older seed not taken yet is replaced)."""
        self._put_seed(_Seed(result, seed, capture_ns))

    def keep_only(self, result: FrameResult, seed: int) -> None:
        """Objects removed or reset: only those in `result` (the newest model result) are carried from now on."""
        self._put_seed(_Seed(result, seed, forget=True))

    def renumbered(self, first_number: int) -> None:
        """A state import moved the numbering to `first_number`: frames waiting with older numbers are handed on
        unanswered."""
        with self._cond:
            self._floor = max(self._floor, first_number)

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
        while True:
            with self._cond:
                while not self._inbox and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                item = self._inbox.popleft()
                skipped = isinstance(item, Numbered) and (item.number in self._skip or item.number < self._floor)
                self._skip.discard(getattr(item, "number", None))
            try:
                if isinstance(item, Numbered):
                    self._frame(item, skipped)
                elif item.forget:
                    self._forget(item)
                else:
                    self._seed(item)
            except Exception:  # a frame the carrier cannot take must not end answering
                log.exception("stream %r: carrying masks failed", self.name)
                if isinstance(item, Numbered) and not skipped:
                    self.unanswered += item.answered

    def _frame(self, item: Numbered, skipped: bool) -> None:
        if skipped:
            self._on_answer(Carried(item, None, None, 0.0, skipped=True))
            return
        t0 = time.perf_counter()
        h, w = item.frame.height, item.frame.width
        if self._carrier is None or (self._carrier.width, self._carrier.height) != (w, h):
            self._carrier = Carrier(w, h, self._ring)  # the first frame, or the camera changed its size
        self._carrier.add(item.number, item.frame.capture_ns, item.frame.image)
        if self._pending is not None and self._pending.result.frame_index <= item.number:
            self._seed(self._pending)
        result = self._carrier.carry() if item.answered else None  # else the model answers this one
        self._on_answer(Carried(item, result, self._carrier.key_capture_ns, (time.perf_counter() - t0) * 1e3))

    def _forget(self, seed: _Seed) -> None:
        keep = set(seed.result.objects)
        if self._carrier is not None:
            self._carrier.forget(set(self._carrier.carried) - keep)
        if self._pending is not None:  # taken before the removal: it must not bring the object back
            objects = {i: o for i, o in self._pending.result.objects.items() if i in keep}
            self._pending = dataclasses.replace(self._pending,
                                                result=dataclasses.replace(self._pending.result, objects=objects))
        self._on_seeded(seed.seed, seed.result.frame_index)

    def _seed(self, seed: _Seed) -> None:
        c = self._carrier
        if c is None or c.newest is None or seed.result.frame_index > c.newest:
            self._pending = seed  # its frame is still on its way here
            return
        self._pending = None
        if c.seed(seed.result, seed.capture_ns):
            self._on_seeded(seed.seed, seed.result.frame_index)
