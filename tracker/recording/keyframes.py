"""Reading a session recorded with frames answered by motion (`between_key_frames = "motion"`) in the order that
made it.

Two threads wrote its timeline: the stream's motion thread (every frame, its answer by motion, the model results it
took: "seeded") and the tracking thread (the frames the model took: "key", its results, the commands it served).
Each thread's records are in order; between the two the order is the recorder's, not the daemon's. So they are
read as two queues: the tracking thread's drives (a key frame is given to the replay's model, a command is served),
and the motion thread's is read up to what that needs (the key frame's picture, the frame a prompt names)."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from pipelines.frame import Frame

MOTION_KINDS = frozenset({"frame", "lost", "seeded", "skipped"})
# Recent frames kept for key frames and prompts, at least: a step or a click lags the frames by seconds (the
# session's own `motion_frames_kept` when larger).
KEPT_FRAMES = 64


@dataclass
class KeyFrameCallbacks:
    """What the replay does with the motion thread's records."""

    frame: Callable[[int, Frame], None]  # every frame, in order: carried and its answer made
    seeded: Callable[[dict], None]  # the motion thread took a model result here
    expected: Callable[[dict], None]  # a recorded result to compare with the replay's
    lost: Callable[[dict], None]  # frames the recorder could not keep


class KeyFrames:
    """The model's frames of one motion session, in the tracking thread's order (`read`), the motion thread's
    records handled on the way. `take()` gives the timeline's next record (None at the end of the recording),
    `decode(record)` a frame record's picture (None when the video is cut short)."""

    def __init__(self, take: Callable[[], dict | None], decode: Callable[[dict], Frame | None],
                 callbacks: KeyFrameCallbacks, on_loop_record: Callable[[dict], None], kept: int = KEPT_FRAMES):
        # Pictures are decoded as their records are taken (a segment's video is read in order, and the next
        # segment's may be opened before this one's frames are all handled): at most a step's worth wait here.
        self._take, self._decode, self._cb = take, decode, callbacks
        self._on_loop_record = on_loop_record  # commands, model results, drops: the replay serves them
        self._loop: deque[dict] = deque()
        self._motion: deque[dict] = deque()
        self._barrier: dict | None = None  # the next session's first record: nothing of it is read yet
        self._kept: OrderedDict[int, tuple[Frame, int]] = OrderedDict()  # number -> (picture, recorded capture_ns)
        self._max_kept = max(kept, KEPT_FRAMES)
        self._skipped: set[int] = set()  # frames the daemon's motion thread did not carry (a backlog)
        self.last_number: int | None = None  # the number of the frame `read` returned last
        self.last_capture_ns: int | None = None  # ... and when it was captured (pacing a replay in real time)
        self._newest = -1  # the newest frame the motion thread's records reached

    def read(self) -> Frame | None:
        """The next key frame (its number in `last_number`); None when this session has no more (its records are
        all handled; `barrier` holds the next session's record, if any)."""
        while True:
            record = self._next_loop()
            if record is None:
                self._drain()
                return None
            if record["kind"] == "key":
                frame = self.until(record["frame"])
                if frame is not None:
                    self.last_number = record["frame"]
                    self.last_capture_ns = self._kept[record["frame"]][1]
                    return frame
            else:
                self._on_loop_record(record)

    @property
    def barrier(self) -> dict | None:
        return self._barrier

    def kept(self, number: int) -> Frame | None:
        entry = self._kept.get(number)
        return entry[0] if entry is not None else None

    def kept_numbers(self) -> list[int]:
        return list(self._kept)

    def until(self, number: int) -> Frame | None:
        """The motion thread's records handled up to frame `number`; that frame's picture (None: it was lost)."""
        while self._newest < number:
            if not self._motion and not self._fill():
                break
            if self._motion:
                self._handle(self._motion.popleft())
        return self.kept(number)

    def _drain(self) -> None:
        while self._motion or self._fill():
            while self._motion:
                self._handle(self._motion.popleft())

    def _next_loop(self) -> dict | None:
        while not self._loop:
            if not self._fill():
                return None
        return self._loop.popleft()

    def _fill(self) -> bool:
        """One more record into its queue; False at the end of the session."""
        if self._barrier is not None:
            return False
        record = self._take()
        if record is None:
            return False
        kind = record["kind"]
        if kind == "session" and not record.get("continues"):
            self._barrier = record
            return False
        if kind == "session":
            return True  # the same session going on in a new segment
        motion = kind in MOTION_KINDS or (kind == "result" and record.get("source") == "motion")
        if kind == "frame":
            record = {**record, "_picture": self._decode(record)}
        (self._motion if motion else self._loop).append(record)
        return True

    def _handle(self, record: dict) -> None:
        kind = record["kind"]
        if kind == "frame":
            self._newest = max(self._newest, record["frame"])
            frame = record["_picture"]
            if frame is None:
                return
            self._kept[record["frame"]] = (frame, record["capture_ns"])
            while len(self._kept) > self._max_kept:
                self._kept.popitem(last=False)
            if record["frame"] in self._skipped:
                self._skipped.discard(record["frame"])
            else:
                self._cb.frame(record["frame"], frame)
        elif kind == "skipped":
            self._skipped.add(record["frame"])
        elif kind == "seeded":
            self._cb.seeded(record)
        elif kind == "lost":
            self._newest = max(self._newest, record["frame"] + record.get("count", 1) - 1)
            self._cb.lost(record)
        else:
            self._cb.expected(record)

