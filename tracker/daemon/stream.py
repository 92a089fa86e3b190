"""One stream of a daemon: its source, its tracker (banks, window, frame numbering), its counters, and
its recorder when recording. A daemon holds one or several; they share the model and the sockets."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.base import Source
from pipelines.frame import Frame

from ..core.results import FrameResult
from ..core.tracker import Tracker
from ..errors import FrameWindowError
from ..protocol import messages
from ..recording.format import RECORDED_OPS
from ..recording.writer import Recorder
from .carrying import Carried, Motion, MotionThread
from .concepting import StreamConcepts
from .feed import Feed, FrameFeed, Numbered
from .publisher import frame_info
from .statedir import StateStore
from .stats import Stats

STATE_OPS = frozenset({"add_points", "add_box", "add_mask", "remove_object", "reset",  # change what a restart needs
                       "add_concept", "remove_concept"})
CONCEPT_OPS = frozenset({"add_concept", "remove_concept", "remove_object", "reset", "import_state"})  # change concepts
PROMPT_OPS = frozenset({"add_points", "add_box", "add_mask"})
# Recent frames whose source facts (FrameInfo) are kept, to publish a frame's result again after a prompt changed
# it: every frame a prompt may name (the feature window, the frames kept for motion) is among them.
INFOS_KEPT = 1024
# Frames the model answered, remembered so that an answer by motion coming later for one is not published after it.
MODEL_ANSWERS_KEPT = 256
# Frames answered by motion whose picture is kept for prompts (a click on one runs the model there): two seconds at
# 15 fps, more than a viewer's click needs to come back; 0.9 MB each at 640x480.
DEFAULT_MOTION_FRAMES_KEPT = 30


@dataclass
class Stream:
    name: str
    source: Source
    tracker: Tracker
    preview_every: int = 0  # a JPEG preview every N frames (0: never)
    recorder: Recorder | None = None
    state: StateStore | None = None  # None: a stream built without the daemon's identity (tests, tools)
    stats: Stats = field(default_factory=Stats)
    error: str | None = None  # why its source could not start (the stream is down, the others run)
    ended: bool = False  # its source ended (a file, a recording) and the end message went out
    last_frame: float = 0.0  # monotonic time of its last tracked frame
    # Between key frames (live sources with `[tracking] between_key_frames = "motion"`): the reader numbering every
    # frame and the thread answering those the model does not take. None: the model's frames only ("drop").
    between_key_frames: str = "drop"  # "motion" (a live source's frames the model does not take) or "drop"
    motion_frames_kept: int = DEFAULT_MOTION_FRAMES_KEPT
    feed: Feed | None = None
    motion: Motion | None = None
    seeds: int = 0  # model results handed to the motion thread (each numbered: a recording names them)
    infos: OrderedDict[int, messages.FrameInfo] = field(default_factory=OrderedDict)  # number -> its frame's facts
    concepts: StreamConcepts | None = None  # its concepts (made without a detector when not given)
    # A frame's answers leave in order (the model's never before motion's): publishing goes under this lock.
    _answers: threading.Lock = field(default_factory=threading.Lock)
    _by_model: OrderedDict[int, None] = field(default_factory=OrderedDict)  # frames the model answered

    def __post_init__(self) -> None:
        if self.concepts is None:
            self.concepts = StreamConcepts(self.name, self.tracker, None)

    @property
    def tags(self) -> messages.Tags:
        """The labels of the objects its concepts found (replaced whole on change: read from any thread)."""
        return self.concepts.tags

    @property
    def running(self) -> bool:
        return self.error is None and not self.ended

    @property
    def dropped(self) -> int:
        """Frames of the source that got no answer: replaced by newer ones before the model was free (when the
        model answers only its own frames), or left by a starved motion thread."""
        return self.source.dropped + (self.motion.unanswered if self.motion is not None else 0)

    def publish(self, number: int, source: str, send: Callable[[], None]) -> bool:
        """Send an answer of frame `number` unless it is motion's and the model answered the frame already (its
        answer would come after the model's better one); False when not sent."""
        with self._answers:
            if source == "motion" and number in self._by_model:
                return False
            if source == "model":
                self._by_model[number] = None
                while len(self._by_model) > MODEL_ANSWERS_KEPT:
                    self._by_model.popitem(last=False)
            send()
            return True

    @property
    def source_error(self) -> str | None:
        """Why the source is down: it could not start, or (still retrying) why its last attempt failed."""
        if self.error is not None:
            return self.error
        return None if self.source.connected else self.source.last_error

    def carry_between_key_frames(self, on_frame: Callable[[Carried], None]) -> None:
        """Answer every frame of a live source (`between_key_frames = "motion"`): the feed and the motion thread
        started, `on_frame` given each frame the motion thread took. A file's frames all go to the model."""
        if self.between_key_frames != "motion" or not self.source.spec.live or self.feed is not None:
            return
        self.motion = MotionThread(self.name, on_frame, self._seeded, self._dropped)
        self.feed = FrameFeed(self.source, self.next_number, self.motion.frame, self.motion_frames_kept)

    def read(self, timeout: float) -> Numbered | None:
        """The next frame for the model: the newest one (numbered by the feed), or the source's next (numbered
        by the tracker); EndOfStream at the end."""
        if self.feed is not None:
            return self.feed.read(timeout)
        frame = self.source.read(timeout)
        return None if frame is None else Numbered(-1, frame, answered=False)

    @property
    def next_number(self) -> int:
        """The number the stream's next frame will get."""
        if self.feed is not None:
            return self.feed.next_number
        latest = self.tracker.latest_frame
        return 0 if latest is None else latest + 1

    def remember(self, number: int, frame: Frame) -> None:
        """A frame's facts kept under its number (republishing after a prompt)."""
        self.infos[number] = frame_info(frame)
        while len(self.infos) > INFOS_KEPT:
            self.infos.popitem(last=False)

    def tracked(self, frame: Frame, result: FrameResult) -> None:
        """A model result, published: into the recording (with its frame unless the motion thread records every
        frame), its number reserved, and its masks carried from now on."""
        if self.recorder is not None:
            if self.motion is None:
                self.recorder.frame(frame, result.frame_index)
            self.recorder.result(result)
        if self.state is not None:
            self.state.reserve(max(result.frame_index + 1, self.next_number))
        self.seed(result, frame.capture_ns)

    def seed(self, result: FrameResult, capture_ns: int | None) -> None:
        """A model result to the motion thread: its masks are carried from now on."""
        if self.motion is not None:
            self.seeds += 1
            self.motion.seed(result, self.seeds, capture_ns)

    def keep_only(self, result: FrameResult) -> None:
        """Objects removed (or a reset): the motion thread carries only those of `result` from now on."""
        if self.motion is not None:
            self.seeds += 1
            self.motion.keep_only(result, self.seeds)

    def key_frame(self, number: int) -> None:
        """The model took this frame (answered by motion too): a recording says so, for its replay."""
        if self.recorder is not None and self.motion is not None:
            self.recorder.marker({"kind": "key", "frame": number})

    def _seeded(self, seed: int, frame: int) -> None:
        """The motion thread took a seed (its thread): a recording says when, between which frames."""
        if self.recorder is not None:
            self.recorder.marker({"kind": "seeded", "seed": seed, "frame": frame})

    def _dropped(self, item: Numbered) -> None:
        """A frame the motion thread's full inbox dropped (the feed's reader): a recording marks it lost."""
        if self.recorder is not None:
            self.recorder.frame_lost(item.number)

    def carried(self, frame: Frame, result: FrameResult | None, number: int, skipped: bool = False) -> None:
        """A frame the motion thread took (answered by motion when `result` is given, not carried when skipped):
        into the recording."""
        if self.recorder is not None:
            if skipped:  # the replay must not carry it either
                self.recorder.marker({"kind": "skipped", "frame": number})
            self.recorder.frame(frame, number)
            if result is not None:
                self.recorder.result(result)

    def renumber(self, first_number: int) -> None:
        """Numbering goes on from `first_number` (a state import): frames numbered before are left behind."""
        if self.feed is not None:
            self.feed.renumber(first_number)
        if self.motion is not None:
            self.motion.renumbered(first_number)

    def reserve_numbers(self) -> None:
        """The frame numbers handed out reserved ahead on disk, with or without model results (each turn)."""
        if self.state is not None and self.feed is not None:
            self.state.reserve(self.feed.next_number)

    def model_frame(self, number: int | None, check: Callable[[int, int], None]) -> int | None:
        """The frame a prompt names made a model frame (None: the newest frame received, or the model's latest
        when it answers every frame): a frame answered by motion runs the model now, in its place, once
        `check(width, height)` accepted the prompt on it (a refused prompt changes nothing). The number, for the
        prompt; a frame that is neither is left to the tracker's own error."""
        if self.feed is None or self.motion is None:
            return number
        if number is None:
            kept = self.feed.kept_numbers()
            if not kept:
                return None
            number = kept[-1]
        if number in self.tracker.window:
            return number
        frame = self.feed.kept(number)
        if frame is None:
            kept = self.feed.kept_numbers()
            frames = f"model frames {self.tracker.window}" + (f", frames {kept[0]}..{kept[-1]}" if kept else "")
            why = "has not arrived yet" if number >= self.feed.next_number else "can no longer be prompted (its " \
                "picture is gone)"
            raise FrameWindowError(f"frame {number} {why}; {frames} can: prompt a recent frame, or keep more "
                                   "([tracking] motion_frames_kept)")
        check(frame.width, frame.height)
        latest = self.tracker.latest_frame
        if latest is None or number > latest:
            self.tracker.step(frame.image, number=number)
            self.feed.taken(number)  # the model has it: not offered to it again
        else:
            self.tracker.insert_frame(number, frame.image)
        return number

    def stop_threads(self) -> None:
        """The feed's reader and the motion thread stopped (the source is stopped by the daemon)."""
        if self.feed is not None:
            self.feed.stop()
        if self.motion is not None:
            self.motion.stop()

    def accepted(self, after_frame: int | None, op: str, args: dict, frames: list[bytes], result: dict) -> None:
        """An accepted request: the state saved and the request recorded when it changed what they keep."""
        if self.state is not None and op in STATE_OPS:
            self.state.save(self.tracker)
        if self.state is not None and op in CONCEPT_OPS:
            self.state.save_concepts(self.concepts.to_dict())
        if self.recorder is None or op not in RECORDED_OPS:
            return
        if op == "import_state":
            self.recorder.import_state(after_frame, frames[0], result)
        else:
            self.recorder.command(after_frame, op, args, frames[0] if frames else None, result)

    def status(self, streams: list[str], metrics_port: int | None) -> messages.DaemonStatus:
        src, info = self.source, self.source.info
        return messages.DaemonStatus(
            stream=self.name, frame=self.tracker.latest_frame,
            source=messages.SourceStatus(
                kind=src.spec.kind, live=src.spec.live, width=info.width if info else None,
                height=info.height if info else None, fps=info.fps if info else None, dropped=src.dropped,
                reconnects=src.reconnects, connected=src.connected and self.error is None, error=self.source_error),
            uptime_s=time.monotonic() - self.stats.started, window=self.window(),
            metrics_port=metrics_port, precision=self.tracker.precision, streams=streams, state=self._state_status(),
            backend=self.tracker.backend)

    def window(self) -> list[int]:
        """[first, last]: every frame numbered in this range may be prompted ([] before the first frame)."""
        model = self.tracker.window
        if self.feed is None:
            return model[:1] + model[-1:]
        # a kept frame before the model's oldest cannot join its timeline (nothing before it to track it from)
        ok = set(model) | {n for n in self.feed.kept_numbers() if not model or n > model[0]}
        if not ok:
            return []
        first = last = max(ok)
        while first - 1 in ok:
            first -= 1
        return [first, last]

    def _state_status(self) -> messages.StateStatus | None:
        r = self.state.report if self.state is not None else None
        if r is None:
            return None
        return messages.StateStatus(r.path, r.restored_objects, r.restored_frame, r.writes, r.write_errors,
                                    r.last_bytes, r.set_aside)

    def summary(self) -> str:
        """This stream in a few words, for systemd's STATUS line."""
        if self.error is not None:
            return f"{self.name}: cannot start"
        if self.ended:
            return f"{self.name}: ended"
        state = "ok" if self.source.connected else "reconnecting"
        return f"{self.name}: {self.stats.fps:.1f} fps, {len(self.tracker.objects)} obj, {state}"
