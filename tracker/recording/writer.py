"""`samtrack serve --record DIR`: every frame that entered the tracker (lossless), every accepted command and
every published result, written by a thread of its own so recording never slows tracking.

Frames wait in a bounded queue; one that finds it full is not recorded but marked lost in the timeline
(and counted). Segments rotate by duration or size; the oldest go when the total passes its limit."""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.frame import Frame
from pipelines.sinks import LosslessFileSink, SinkError

from ..core.results import FrameResult
from ..runner.recording import Manifest, segment_paths, segments, timeline_result

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0  # at shutdown, how long the writer may take to flush what is queued
RETRY_S = 5.0  # after a failed write (a full disk), frames are dropped this long before a new segment is tried
RECORD_FPS = 30.0  # nominal rate stamped on recorded frames (players need one; the timeline has the real times)


@dataclass(frozen=True)
class RecordSettings:
    directory: Path
    segment_s: float  # a new segment after this long
    segment_bytes: int  # ... or once its video is this large
    max_bytes: int  # oldest segments deleted while the recording is larger
    queue_frames: int  # frames waiting for the writer before new ones are marked lost
    idle_priority: bool = True  # the writer only uses CPU time tracking leaves idle (SCHED_IDLE)


class Recorder:
    """Hands frames, commands and results to the writer thread; never blocks the caller."""

    def __init__(self, settings: RecordSettings, manifest: Manifest):
        self.settings = settings
        self.lost = 0  # frames not recorded: the writer fell behind, or writing failed
        self.errors = 0  # failed writes (a full disk, a removed directory)
        settings.directory.mkdir(parents=True, exist_ok=True)
        manifest.write(settings.directory)
        self._queue: queue.Queue = queue.Queue()
        self._frames_queued = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._writer = _Writer(settings)
        self._thread.start()

    def frame(self, frame: Frame, tracker_frame: int) -> None:
        with self._lock:
            full = self._frames_queued >= self.settings.queue_frames
            if not full:
                self._frames_queued += 1
        if full:
            self.lost += 1
            self._queue.put({"kind": "lost", "frame": tracker_frame})
        else:
            self._queue.put((frame, {"kind": "frame", "frame": tracker_frame, "source_index": frame.index,
                                     "capture_ns": frame.capture_ns, "pts_ns": frame.pts_ns}))

    def command(self, after_frame: int | None, op: str, args: dict, mask: bytes | None, reply: dict) -> None:
        self._queue.put({"kind": "command", "after_frame": after_frame, "op": op, "args": args,
                         "mask": base64.b64encode(mask).decode("ascii") if mask is not None else None,
                         "reply": reply})

    def result(self, result: FrameResult) -> None:
        self._queue.put(result)

    def flush(self, timeout: float) -> bool:
        """Waits until everything handed over so far is written (or dropped); False on timeout."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("recorder still writing after %.0f s; the last segment may be cut short", CLOSE_TIMEOUT_S)

    def _run(self) -> None:
        if self.settings.idle_priority:
            # SCHED_IDLE: the writer (and the encoder threads it starts, which inherit it) runs only on CPU
            # time that tracking leaves idle; when there is none its queue fills and frames are marked lost.
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
        failing_since: float | None = None  # a failed write stops recording until this + RETRY_S
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            if isinstance(item, tuple):
                with self._lock:
                    self._frames_queued -= 1
            if failing_since is not None:
                if not isinstance(item, tuple):
                    continue
                if time.monotonic() < failing_since + RETRY_S:
                    self.lost += 1
                    continue
            try:
                if isinstance(item, tuple):
                    self._writer.frame(*item)
                elif isinstance(item, FrameResult):
                    self._writer.record(timeline_result(item))
                else:
                    self._writer.record(item)
            except (OSError, SinkError) as e:  # a full disk must not stop tracking: say so, retry later
                self.errors += 1
                if isinstance(item, tuple):
                    self.lost += 1
                if failing_since is None:
                    log.error("recording to %s failed (%s); tracking goes on, frames are not recorded until a "
                              "write succeeds (tried every %.0f s, in a new segment): free space or fix the "
                              "directory", self.settings.directory, e, RETRY_S)
                failing_since = time.monotonic()
                self._writer.abandon()
                continue
            if failing_since is not None:
                log.warning("recording resumed in a new segment after %d failed writes", self.errors)
                failing_since = None
        self._writer.close()


class _Writer:
    """The writer thread's side: the current segment's video and timeline, rotation, the size limit."""

    def __init__(self, settings: RecordSettings):
        self.settings = settings
        existing = segments(settings.directory)
        self._next = existing[-1] + 1 if existing else 0
        self._video: LosslessFileSink | None = None
        self._size: tuple[int, int] | None = None
        self._timeline = None
        self._started = 0.0
        self._open()

    def _open(self) -> None:
        video, timeline = segment_paths(self.settings.directory, self._next)
        self._video_path, self._n = video, self._next
        self._next += 1
        self._timeline = open(timeline, "a")  # noqa: SIM115  (closed on rotation and at close)
        self._started = time.monotonic()
        self._enforce_limit()

    def frame(self, frame: Frame, record: dict) -> None:
        if self._timeline is None:  # the last segment was abandoned
            self._open()
        size = (frame.width, frame.height)
        if self._video is not None and (size != self._size or self._due()):
            self._rotate()
        if self._video is None:
            self._video = LosslessFileSink(self._video_path, frame.width, frame.height, RECORD_FPS)
            self._size = size
        self._video.push(frame.image)
        self.record(record)

    def record(self, record: dict) -> None:
        self._timeline.write(json.dumps(record) + "\n")
        self._timeline.flush()

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
        """Delete the oldest complete segments while the recording exceeds max_bytes."""
        d = self.settings.directory
        done = [n for n in segments(d) if n != self._n]
        sizes = {n: sum(p.stat().st_size for p in segment_paths(d, n) if p.is_file()) for n in done}
        total = sum(sizes.values())
        for n in done:
            if total <= self.settings.max_bytes:
                break
            for p in segment_paths(d, n):
                p.unlink(missing_ok=True)
            total -= sizes[n]
            log.info("recording over %d bytes: deleted segment %06d", self.settings.max_bytes, n)

    def abandon(self) -> None:
        """Gives up the current segment after a failed write; the next frame opens a new one."""
        video, timeline, self._video, self._timeline = self._video, self._timeline, None, None
        for closable in (video, timeline):
            try:
                if closable is not None:
                    closable.close()
            except (OSError, SinkError) as e:
                log.debug("closing the failed segment: %s", e)

    def close(self) -> None:
        self._close_segment()
