"""The recording's files on disk: the current segment's lossless video and timeline, rotation by duration or
size, and the size limit (the oldest segments deleted, then the session manifests and kept states nothing
left uses)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import SinkError
from pipelines.frame import Frame

from .format import (
    SESSIONS,
    STATES,
    Manifest,
    RecordingError,
    keep_state,
    numbered,
    segment_paths,
    segment_refs,
    segments,
    session_path,
)

log = logging.getLogger(__name__)

RECORD_FPS = 30.0  # nominal rate stamped on recorded frames (players need one; the timeline has the real times)


@dataclass(frozen=True)
class RecordSettings:
    directory: Path
    segment_s: float  # a new segment after this long
    segment_bytes: int  # ... or once its video is this large
    max_bytes: int  # oldest segments deleted while the recording is larger
    queue_frames: int  # frames waiting for the writer before new ones are marked lost
    idle_priority: bool = True  # the writer only uses CPU time tracking leaves idle (SCHED_IDLE)



def _bytes_under(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*") if p.is_file()) if directory.is_dir() else 0


class SegmentWriter:
    """The writer thread's side: the current segment's video and timeline, rotation, the size limit."""

    def __init__(self, settings: RecordSettings, session: int):
        self.settings = settings
        self.session = session
        existing = segments(settings.directory)
        self._next = existing[-1] + 1 if existing else 0
        self._video = None  # the segment's LosslessFileSink, opened with its first frame
        self._size: tuple[int, int] | None = None
        self._timeline = None
        self._started = 0.0
        self._continues = False  # the session's first segment starts it; later ones continue it
        self._held: set[str] = set()  # kept states whose import_state command is queued, not yet written
        self._held_lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        self._n = self._next
        self._video_path, timeline = segment_paths(self.settings.directory, self._n)
        self._next += 1
        self._opened_continues = self._continues
        self._lines = 0  # records in its timeline: with no more than its session record it is not worth a file
        self._enforce_limit()  # first: on a full disk, the old segments over the limit make room for this one
        self._timeline = open(timeline, "a")  # noqa: SIM115  (closed on rotation and at close)
        self._started = time.monotonic()
        self.record({"kind": "session", "session": self.session, "continues": self._continues})
        self._continues = True

    def frame(self, frame: Frame, record: dict) -> None:
        if self._timeline is None:  # the last segment was abandoned
            self._open()
        size = (frame.width, frame.height)
        if self._video is not None and (size != self._size or self._due()):
            self._rotate()
        if self._video is None:
            from pipelines.sinks import LosslessFileSink  # GStreamer: loaded here, after any model conversion

            self._video = LosslessFileSink(self._video_path, frame.width, frame.height, RECORD_FPS)
            self._size = size
        self._video.push(frame.image)
        self.record(record)

    def record(self, record: dict) -> None:
        if self._timeline is None:
            self._open()
        self._timeline.write(json.dumps(record) + "\n")
        self._timeline.flush()
        self._lines += 1
        if record.get("op") == "import_state":
            self.release_state(record["args"]["state"])

    def keep_state(self, data: bytes) -> str:
        """A tracker state's bytes stored in the recording (format.keep_state), kept from the size limit until
        the import_state command naming it is in the timeline; its path relative to the recording."""
        with self._held_lock:  # the prune's deletions wait: one between the write and the hold would take it
            name = keep_state(self.settings.directory, data)
            self._held.add(name)
        return name

    def release_state(self, name: str) -> None:
        with self._held_lock:
            self._held.discard(name)

    def _due(self) -> bool:
        if time.monotonic() - self._started >= self.settings.segment_s:
            return True
        return self._video_path.is_file() and self._video_path.stat().st_size >= self.settings.segment_bytes

    def _rotate(self) -> None:
        self._close_segment()
        self._open()

    def _close_segment(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None
        if self._timeline is not None:
            self._timeline.close()
            self._timeline = None

    def _enforce_limit(self) -> None:
        """Delete the oldest complete segments while the recording (its kept states and session manifests
        included) exceeds max_bytes, then the states and manifests of sessions no segment is left of."""
        d = self.settings.directory
        done = [n for n in segments(d) if n != self._n]
        sizes = {n: sum(p.stat().st_size for p in segment_paths(d, n) if p.is_file()) for n in done}
        total = sum(sizes.values()) + _bytes_under(d / STATES) + _bytes_under(d / SESSIONS)
        deleted = []
        for n in done:
            if total <= self.settings.max_bytes:
                break
            for p in segment_paths(d, n):
                p.unlink(missing_ok=True)
            total -= sizes[n]
            deleted.append(n)
            log.info("recording over %d bytes: deleted segment %06d", self.settings.max_bytes, n)
        if deleted:
            self._prune_sessions()

    def _prune_sessions(self) -> None:
        """Session manifests without a segment left, and kept states nothing left names, deleted."""
        d = self.settings.directory
        live, imported = {self.session}, set()
        for n in segments(d):
            session, states = segment_refs(d, n)
            live.add(session)
            imported |= states
        restored = set()
        for session in numbered(d / SESSIONS, ".json"):
            if session not in live:
                session_path(d, session).unlink(missing_ok=True)
                continue
            try:
                restored.add(Manifest.read(d, session).restored_state)
            except RecordingError:
                continue
        with self._held_lock:  # no state is kept (written, then held) while these are chosen and deleted
            keep = imported | restored | self._held
            for path in (d / STATES).glob("*.state"):
                if f"{STATES}/{path.name}" not in keep:
                    path.unlink(missing_ok=True)
                    log.info("recording: deleted kept state %s (no session left uses it)", path.name)

    def abandon(self) -> None:
        """Gives up the current segment after a failed write; the next frame opens a new one. A segment that got
        no record past its session record is deleted and its number used again (a full disk retried every few
        seconds leaves no trail of empty files)."""
        video, timeline, self._video, self._timeline = self._video, self._timeline, None, None
        for closable in (video, timeline):
            try:
                if closable is not None:
                    closable.close()
            except (OSError, SinkError) as e:
                log.debug("closing the failed segment: %s", e)
        if self._lines <= 1:
            for path in segment_paths(self.settings.directory, self._n):
                path.unlink(missing_ok=True)
            self._next, self._continues = self._n, self._opened_continues

    def close(self) -> None:
        self._close_segment()
