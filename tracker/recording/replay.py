"""A recording read back: its frames as a `Source`, its sessions, commands and results handed to whoever
replays it, with recorded frame numbers mapped to the replay's own."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.base import StreamInfo
from pipelines.errors import EndOfStream, SourceError
from pipelines.frame import Frame
from pipelines.spec import SourceSpec

from .format import Manifest, RecordingError, read_timeline, segment_paths, segments
from .keyframes import KeyFrameCallbacks, KeyFrames

log = logging.getLogger(__name__)


@dataclass
class FrameMap:
    """Recorded frame numbers of one session -> the replay's (the replay starts at 0 with the first recorded
    frame and never sees lost frames)."""

    first: int | None = None  # the first recorded frame of the session still in the recording
    lost: list[tuple[int, int]] = field(default_factory=list)  # (first frame, count) of lost runs
    base: int = 0  # the replay's number of that first frame (a session restored from a state starts later)
    identity: bool = False  # the replay numbers frames as recorded (a session answered by motion)

    def replayed(self, recorded: int) -> int | None:
        """The replay's number of a recorded frame; None when the replay never had it (lost, rotated out)."""
        if self.first is None or recorded < self.first:
            return None
        skipped = 0
        for start, count in self.lost:
            if start <= recorded < start + count:
                return None
            if start >= self.first and start + count <= recorded:
                skipped += count
        return recorded if self.identity else self.base + recorded - self.first - skipped


class RecordingSource:
    """A recording's frames, in order, as a `Source`. Met in the timeline: a new session goes to `on_session`
    (a fresh tracker must take over), commands to `on_command` before the frame that followed them,
    recorded results to `on_expected`, lost frames and dropped records to `on_gap`."""

    def __init__(self, directory: Path, realtime: bool = False):
        self.directory = directory
        self.spec = SourceSpec("file", str(directory))
        self.realtime = realtime  # pace frames as they were captured
        self.info: StreamInfo | None = None
        self.dropped = self.reconnects = 0
        self.last_error: str | None = None
        self.on_session: Callable[[Manifest], None] = lambda manifest: None
        self.on_command: Callable[[dict, FrameMap], None] = lambda record, frames: None
        self.on_expected: Callable[[dict, FrameMap], None] = lambda record, frames: None
        self.on_gap: Callable[[str], None] = lambda why: None
        # A session answered by motion: every frame (in order) to `on_motion_frame`, the motion thread's taking of a
        # model result to `on_seeded`; only key frames are returned by read() (tracker/recording/keyframes.py).
        self.on_motion_frame: Callable[[int, Frame], None] = lambda number, frame: None
        self.on_seeded: Callable[[dict], None] = lambda record: None
        self.keys: KeyFrames | None = None  # the current session's, when it was answered by motion
        self.warnings: list[str] = []
        self.frames = FrameMap()  # the current session's
        self.sessions = 0  # sessions replayed
        self._session: int | None = None
        self._segments: list[int] = []
        self._records: list[dict] = []
        self._video = None  # the segment's GstSource
        self._pace: tuple[float, int] | None = None  # (monotonic, capture_ns) of the first paced frame
        self._pending: tuple[float, dict, np.ndarray] | None = None  # a paced frame not yet due: (when, record, image)

    @property
    def connected(self) -> bool:
        return True

    def start(self) -> StreamInfo:
        self._segments = segments(self.directory)
        if not self._segments:
            raise RecordingError(f"{self.directory} holds no segment: nothing was recorded")
        self._open(self._segments.pop(0))
        if not self._records or self._records[0].get("kind") != "session":  # format 1: one session
            self._begin(0, continues=False)
        self.info = StreamInfo(0, 0, None, f"recording {self.directory}")
        return self.info

    def stop(self) -> None:
        if self._video is not None:
            self._video.stop()
            self._video = None

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._pending is not None:
            return self._when_due(timeout)
        while True:
            if self.keys is not None:  # a session answered by motion: its key frames
                frame = self.keys.read()
                if frame is not None:
                    return self._paced(frame, self.keys.last_capture_ns, timeout)
                barrier, self.keys = self.keys.barrier, None
                if barrier is None:
                    raise EndOfStream(str(self.directory))
                self._handle(barrier)
                continue
            record = self._take()
            if record is None:
                raise EndOfStream(str(self.directory))
            if record["kind"] == "frame":
                return self._frame(record, timeout)
            self._handle(record)

    @property
    def number(self) -> int | None:
        """The recorded number of the frame read() returned last, in a session answered by motion."""
        return self.keys.last_number if self.keys is not None else None

    def kept(self, number: int) -> Frame | None:
        """A recent frame of a session answered by motion, by its recorded number."""
        return self.keys.kept(number) if self.keys is not None else None

    def _take(self) -> dict | None:
        """The timeline's next record (segments opened in turn); None at the end of the recording."""
        while not self._records:
            if not self._segments:
                return None
            self._open(self._segments.pop(0))
        return self._records.pop(0)

    def _handle(self, record: dict) -> None:
        """Any record but a frame's."""
        kind = record["kind"]
        if kind == "session":
            self._begin(record["session"], record["continues"])
        elif kind == "command":
            self.on_command(record, self.frames)
        elif kind == "result":
            self.on_expected(record, self.frames)
        elif kind == "lost":
            count = record.get("count", 1)
            self.frames.lost.append((record["frame"], count))
            self._warn(f"{count} frame(s) from {record['frame']} were lost while recording (the recorder fell "
                       "behind): results after them are compared by IoU")
            self.on_gap("lost")
        elif kind == "dropped":
            markers = record.get("markers", 0)
            self._warn(f"the recorder dropped {record['commands']} command(s), {record['results']} result(s) and "
                       f"{markers} marker(s) here (its queue was full)")
            if record["commands"]:
                self.on_gap("commands")
            elif markers:
                self.on_gap("markers")

    def _begin(self, session: int, continues: bool) -> None:
        """A session record: the same session going on in a new segment, or a new one (a fresh tracker)."""
        if continues and session == self._session:
            return
        self._session = session
        self.frames = FrameMap()
        self.sessions += 1
        manifest = Manifest.read(self.directory, session)
        self.on_session(manifest)
        if manifest.between_key_frames == "motion":
            self.frames.identity = True  # the replay numbers its frames as recorded
            callbacks = KeyFrameCallbacks(self.on_motion_frame, self.on_seeded,
                                          lambda r: self.on_expected(r, self.frames), self._handle)
            self.keys = KeyFrames(self._take, self._decode, callbacks, self._handle, manifest.motion_frames_kept)
        if continues:
            self._warn(f"the recording starts in the middle of session {session} (its first segments were "
                       "rotated out): objects prompted before are not in it, and its results are not compared")
            self.on_gap("rotated")

    def _frame(self, record: dict, timeout: float) -> Frame | None:
        frame = self._decode(record)
        if frame is None:
            return self.read(timeout)
        return self._paced(frame, record["capture_ns"], timeout)

    def _paced(self, frame: Frame, capture_ns: int, timeout: float) -> Frame | None:
        """A frame now, or (realtime) once as much time passed since the first as passed when it was captured."""
        if not self.realtime:
            return frame
        if self._pace is None:
            self._pace = (time.monotonic(), capture_ns)
        t0, c0 = self._pace
        self._pending = (t0 + (capture_ns - c0) / 1e9, {"source_index": frame.index, "pts_ns": frame.pts_ns},
                         frame.image)
        return self._when_due(timeout)

    def _decode(self, record: dict) -> Frame | None:
        """A frame record's picture from its segment's video; None when the video is cut short (then the rest of
        the segment is skipped, its frames counted lost)."""
        try:
            decoded = self._video.read(10.0) if self._video is not None else None
        except (EndOfStream, SourceError):
            decoded = None
        if decoded is None:  # a daemon killed while recording: the rest of this segment is not replayed
            self._warn(f"segment video ends before frame {record['frame']} (truncated: the recording was cut "
                       "short); the rest of the segment is skipped")
            skipped = [record, *(r for r in self._records if r["kind"] == "frame")]
            self.frames.lost += [(r["frame"], 1) for r in skipped]  # the replay never has them
            self._records = []
            self.on_gap("truncated")
            return None
        if self.frames.first is None:
            self.frames.first = record["frame"]
            late = record["frame"] > 0 and self.frames.base == 0  # a restored session starts later by design
            if late and not any(s <= 0 < s + c for s, c in self.frames.lost):
                self._warn(f"session {self._session} starts at frame {record['frame']} in the recording (earlier "
                           "segments were rotated out): objects prompted before are not in it, and its results "
                           "are not compared")
                self.on_gap("rotated")
        return Frame(record["source_index"], record["pts_ns"], time.monotonic_ns(), decoded.image)

    def _when_due(self, timeout: float) -> Frame | None:
        """The paced frame once its time has come (waiting up to timeout: a daemon's other streams go on)."""
        due, record, image = self._pending
        wait = due - time.monotonic()
        if wait > timeout:
            time.sleep(max(0.0, timeout))
            return None
        time.sleep(max(0.0, wait))
        self._pending = None
        return Frame(record["source_index"], record["pts_ns"], time.monotonic_ns(), image)

    def _open(self, n: int) -> None:
        video, timeline = segment_paths(self.directory, n)
        self._records, truncated = read_timeline(timeline)
        if truncated:
            self._warn(f"{timeline.name}: its last record is cut short (ignored)")
        self.stop()
        if any(r["kind"] == "frame" for r in self._records):
            if not video.is_file():  # a write that failed (a full disk) or a file removed: its frames are skipped
                self._warn(f"{video.name} is missing though its timeline names frames")
                return
            from pipelines.source import GstSource  # GStreamer: loaded here, after any model conversion

            video_source = GstSource(str(video))
            try:
                video_source.start()
            except SourceError as e:  # empty or cut short before its first frame: its frames are skipped
                self._warn(f"{video.name} cannot be read ({e})")
                return
            self._video = video_source

    def _warn(self, text: str) -> None:
        log.warning("%s", text)
        self.warnings.append(text)
