"""Every frame of a live source numbered and answered: a reader thread takes each frame as it arrives, gives it
its number, hands it to the motion thread (which answers it unless the model is about to) and offers it to the
model (the newest frame waiting replaces an older one: the model always takes the newest when it is free).

Frames whose image a prompt may still need (a click on a frame answered by motion runs the model there) are kept,
the newest `kept` of them."""

from __future__ import annotations

import logging
import statistics
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pipelines.base import Source
from pipelines.errors import EndOfStream
from pipelines.frame import Frame

log = logging.getLogger(__name__)

READ_SLICE_S = 0.1  # the reader's wait for a frame: how soon it notices a stop
# A model waiting for a frame answers it itself only when its steps take less than this (a GPU): a slower model's
# frames are answered by motion first, within a few ms, and by the model later (a revision), so that no frame waits
# a step for its first answer. 40 ms: about a frame interval at 25-30 fps.
MODEL_FIRST_MS = 40.0
STEPS_MEASURED = 16  # recent steps whose median decides the above


@dataclass(frozen=True)
class Numbered:
    """A frame and its number in the stream; `answered`: the motion thread answers it (the model was busy when
    it came, or its steps are slow: MODEL_FIRST_MS), so the model's result for it, if any, is a second answer."""

    number: int
    frame: Frame
    answered: bool


class Feed(Protocol):
    """What a stream reads its model's frames from when frames between key frames are answered: the daemon's
    FrameFeed, or a replay's (tracker/daemon/replay_motion.py)."""

    def start(self) -> None: ...
    def read(self, timeout: float) -> Numbered | None: ...
    @property
    def next_number(self) -> int: ...
    def renumber(self, first_number: int) -> None: ...
    def taken(self, number: int) -> None: ...
    def stepped(self, ms: float) -> None: ...
    def kept(self, number: int) -> Frame | None: ...
    def kept_numbers(self) -> list[int]: ...
    def stop(self) -> None: ...


class FrameFeed:
    """The model's side reads the newest numbered frame (`read`); `on_frame(numbered)` sees every frame, in order,
    on the reader thread (the motion thread's inbox)."""

    def __init__(self, source: Source, first_number: int, on_frame: Callable[[Numbered], None], kept: int):
        self.source = source
        self._on_frame = on_frame
        self._next = first_number
        self._kept: OrderedDict[int, Frame] = OrderedDict()
        self._max_kept = kept
        self._cond = threading.Condition()
        self._newest: Numbered | None = None
        self._waiting = 0  # model-side readers inside read(): a frame that comes now is the model's at once
        self._ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._steps_ms: deque[float] = deque(maxlen=STEPS_MEASURED)
        self._floor = first_number  # frames numbered below this belong to a numbering a state import replaced

    def start(self) -> None:
        """Start the source (raising as its start does), then the reader."""
        self.source.start()
        self._thread = threading.Thread(target=self._run, name=f"feed-{self.source.spec.kind}", daemon=True)
        self._thread.start()

    @property
    def next_number(self) -> int:
        """The number the next frame will get."""
        with self._cond:
            return self._next

    def renumber(self, first_number: int) -> None:
        """Number frames from here on (after a state import moved the numbering forward; never backwards); frames
        numbered before are neither offered to the model nor kept for prompts any more."""
        with self._cond:
            self._next = max(self._next, first_number)
            self._floor = max(self._floor, first_number)
            if self._newest is not None and self._newest.number < self._floor:
                self._newest = None
            for n in [n for n in self._kept if n < self._floor]:
                del self._kept[n]

    def taken(self, number: int) -> None:
        """The model ran on frame `number` outside read() (a prompt on the newest frame): the frame waiting for it,
        if no newer one, is not offered again."""
        with self._cond:
            if self._newest is not None and self._newest.number <= number:
                self._newest = None

    def read(self, timeout: float) -> Numbered | None:
        """The newest frame the model has not taken, waiting up to `timeout` s; EndOfStream once the source ended
        and every frame was taken."""
        with self._cond:
            self._waiting += 1
            try:
                if self._newest is None and not self._ended:
                    self._cond.wait(timeout)
                item, self._newest = self._newest, None
                if item is None and self._ended:
                    raise EndOfStream(f"source {self.source.spec.kind} ended")
                return item
            finally:
                self._waiting -= 1

    def stepped(self, ms: float) -> None:
        """How long the model's last step took (the tracking thread tells)."""
        with self._cond:
            self._steps_ms.append(ms)

    def kept(self, number: int) -> Frame | None:
        """A recent frame's image, while it is among the newest kept (None after)."""
        with self._cond:
            return self._kept.get(number)

    def kept_numbers(self) -> list[int]:
        with self._cond:
            return list(self._kept)

    def stop(self) -> None:
        """Stop the reader (the source is stopped by its owner); safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * READ_SLICE_S + 1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read(READ_SLICE_S)
            except EndOfStream:
                with self._cond:
                    self._ended = True
                    self._cond.notify_all()
                return
            except Exception:  # a source that fails outside its own recovery: the stream waits, the daemon runs
                log.exception("reading the source failed")
                self._stop.wait(READ_SLICE_S)
                continue
            if frame is not None:
                self._arrived(frame)

    def _arrived(self, frame: Frame) -> None:
        # Numbered, judged and offered in one step: a model inside read() now takes this very frame when it wakes.
        # A frame left to a waiting model that has not woken yet stays the model's (it takes it when it wakes), and
        # this one is motion's: replacing it would leave it without any answer.
        with self._cond:
            number, self._next = self._next, self._next + 1
            slow = not self._steps_ms or statistics.median(self._steps_ms) >= MODEL_FIRST_MS
            promised = self._newest is not None and not self._newest.answered
            item = Numbered(number, frame, answered=self._waiting == 0 or slow or promised)
            self._kept[number] = frame
            while len(self._kept) > self._max_kept:
                self._kept.popitem(last=False)
            if not promised:
                self._newest = item
            self._cond.notify_all()
        self._on_frame(item)
