"""`samtrack serve --record DIR`: every frame that entered the tracker (lossless), every accepted command and
every published result, written by a thread of its own so recording never slows tracking.

Everything waits for the writer in one bounded queue: a frame that finds the frames' share full is not
recorded but marked lost in the timeline (consecutive lost frames share one record); results and commands
beyond their shares are dropped, counted, and the drop is written to the timeline. Segments rotate by
duration or size; the oldest go when the total passes its limit."""

from __future__ import annotations

import base64
import collections
import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass

from pipelines.errors import SinkError
from pipelines.frame import Frame

from ..core.results import FrameResult
from .format import Manifest, ResultRecord, next_session
from .segments import RecordSettings, SegmentWriter

log = logging.getLogger(__name__)

RETRY_S = 5.0  # after a failed write (a full disk), frames are dropped this long before a new segment is tried
# Results waiting per frame the queue may hold: a result follows each frame, and a writer that falls behind
# on frames falls behind on results too; beyond this they are dropped (their frames' results go unverified).
RESULTS_PER_FRAME = 2
# Markers waiting per frame (a frame the model took, a seed taken, a frame skipped): a replay needs every one, so
# they have a share of their own; one dropped ends the exact replay of its session, as a dropped command does.
MARKERS_PER_FRAME = 4
# Bytes of accepted commands waiting (a mask prompt may be megabytes): a client flooding valid prompts
# while the writer is starved must not grow memory without bound; beyond this they are dropped and marked.
COMMAND_BYTES = 32 << 20


@dataclass
class _Lost:
    """Consecutive frames not recorded: one timeline record, however many there are."""

    frame: int
    count: int = 1


@dataclass
class _Gap:
    """What a writer skipped while its writes failed: runs of frames, results and commands."""

    runs: list[list[int]] = dataclasses.field(default_factory=list)  # [first frame, count]
    results: int = 0
    commands: int = 0
    markers: int = 0
    retry_at: float = 0.0

    @property
    def frames(self) -> int:
        return sum(n for _, n in self.runs)

    def lost(self, frame: int, count: int) -> None:
        if self.runs and self.runs[-1][0] + self.runs[-1][1] == frame:
            self.runs[-1][1] += count
        else:
            self.runs.append([frame, count])

    def records(self) -> list[dict]:
        out = [{"kind": "lost", "frame": f, "count": n} for f, n in self.runs]
        if self.results or self.commands or self.markers:
            out.append({"kind": "dropped", "commands": self.commands, "results": self.results,
                        "markers": self.markers})
        return out


@dataclass(frozen=True)
class _FrameItem:
    frame: Frame
    record: dict


@dataclass(frozen=True)
class _Marker:
    record: dict


class Recorder:
    """Hands frames, commands and results to the writer thread; never blocks the caller."""

    def __init__(self, settings: RecordSettings, manifest: Manifest):
        self.settings = settings
        settings.directory.mkdir(parents=True, exist_ok=True)
        self.manifest = dataclasses.replace(manifest, session=next_session(settings.directory))
        self.manifest.write(settings.directory)
        self._lock = threading.Lock()  # counters and the queue are shared with the writer thread
        self._ready = threading.Condition(self._lock)
        self._queue: collections.deque = collections.deque()
        self._frames = self._results = self._markers = self._command_bytes = 0  # what waits, per share
        self._last_lost: _Lost | None = None  # extended while no frame was queued after it
        self._dropped_commands = self._dropped_results = self._dropped_markers = 0  # not yet in the timeline
        self._stopping = False
        self.lost = 0  # frames not recorded: the writer fell behind, or writing failed
        self.results_lost = 0  # results not recorded (the queue's share was full)
        self.commands_lost = 0  # accepted commands not recorded (the queue's share was full)
        self.markers_lost = 0  # markers not recorded (their share was full, or writing failed)
        self.errors = 0  # failed writes (a full disk, a removed directory)
        self._writer = SegmentWriter(settings, self.manifest.session)
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    # ---- the tracking thread's side -----------------------------------------------------------
    def frame(self, frame: Frame, tracker_frame: int) -> None:
        with self._lock:
            if self._frames >= self.settings.queue_frames:
                self._lose(tracker_frame)
                return
            self._frames += 1
            self._last_lost = None
            self._put(_FrameItem(frame, {"kind": "frame", "frame": tracker_frame, "source_index": frame.index,
                                         "capture_ns": frame.capture_ns, "pts_ns": frame.pts_ns}))

    def result(self, result: FrameResult) -> None:
        record = ResultRecord.of(result)
        with self._lock:
            if self._results >= RESULTS_PER_FRAME * self.settings.queue_frames:
                self.results_lost += 1
                self._dropped_results += 1
                return
            self._results += 1
            self._put(record)

    def frame_lost(self, tracker_frame: int) -> None:
        """A frame that never reached the recorder (dropped before it): marked lost in the timeline."""
        with self._lock:
            self._lose(tracker_frame)

    def _lose(self, tracker_frame: int) -> None:
        self.lost += 1
        if self._last_lost is not None and self._last_lost.frame + self._last_lost.count == tracker_frame:
            self._last_lost.count += 1
        else:
            self._last_lost = _Lost(tracker_frame)
            self._put(self._last_lost)

    def marker(self, record: dict) -> None:
        """A small timeline record of when something happened between frames (the model took a frame as a key
        frame, the motion thread took a model result or skipped a frame), with its own share of the queue."""
        with self._lock:
            if self._markers >= MARKERS_PER_FRAME * self.settings.queue_frames:
                self.markers_lost += 1
                self._dropped_markers += 1
                return
            self._markers += 1
            self._put(_Marker(record))

    def command(self, after_frame: int | None, op: str, args: dict, mask: bytes | None, reply: dict) -> bool:
        """Queue an accepted command's record; False when it had to be dropped (counted and logged)."""
        size = len(mask or b"") + 1024
        with self._lock:
            full = self._command_bytes + size > COMMAND_BYTES
        record = {"kind": "command", "after_frame": after_frame, "op": op, "args": args, "reply": reply,
                  "mask": base64.b64encode(mask).decode("ascii") if mask is not None and not full else None}
        with self._lock:
            if full or self._command_bytes + size > COMMAND_BYTES:
                self.commands_lost += 1
                self._dropped_commands += 1
                log.error("recorder: an accepted %s could not be queued (the writer is behind): the recording "
                          "cannot be replayed exactly past this point", op)
                return False
            self._command_bytes += size
            self._put((size, record))
        return True

    def import_state(self, after_frame: int | None, data: bytes, reply: dict) -> None:
        """An accepted import_state: its state kept in the recording at once (rare, and larger than the queue's
        share of commands), the command recorded naming it."""
        try:
            name = self._writer.keep_state(data)  # not pruned before its command is in the timeline
        except OSError as e:
            with self._lock:
                self.errors += 1
                self.commands_lost += 1
                self._dropped_commands += 1
            log.error("recorder: the imported state could not be kept (%s): the recording cannot be replayed "
                      "exactly past this point", e)
            return
        if not self.command(after_frame, "import_state", {"state": name}, None, reply):
            self._writer.release_state(name)

    def _put(self, item) -> None:
        self._mark_drops()
        self._queue.append(item)
        self._ready.notify()

    def _mark_drops(self) -> None:
        """The timeline says what is missing, where it went missing (this record needs no share of its own:
        there is at most one between two queued items)."""
        if self._dropped_commands or self._dropped_results or self._dropped_markers:
            self._queue.append({"kind": "dropped", "commands": self._dropped_commands,
                                "results": self._dropped_results, "markers": self._dropped_markers})
            self._dropped_commands = self._dropped_results = self._dropped_markers = 0

    def flush(self, timeout: float) -> bool:
        """Waits until everything handed over so far is written (or dropped); False on timeout."""
        done = threading.Event()
        with self._lock:
            self._put(done)
        return done.wait(timeout)

    def stop(self) -> None:
        """Ask the writer to finish what is queued and close its segment (see `join`), at normal priority."""
        with self._lock:
            self._mark_drops()
            self._stopping = True
            self._ready.notify()
        if self.settings.idle_priority:
            _leave_idle_priority()

    def join(self, deadline: float) -> None:
        """Wait for the writer until `deadline` (monotonic); what is still queued then is not recorded."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            with self._lock:
                left = len(self._queue)
            log.warning("recorder still writing at shutdown; %d queued records are not recorded and the last "
                        "segment may be cut short", left)

    def close(self, timeout: float = 10.0) -> None:
        self.stop()
        self.join(time.monotonic() + timeout)

    # ---- the writer thread ----------------------------------------------------------------------
    def _next(self):
        """The next queued item (None once stopping and drained)."""
        with self._lock:
            while not self._queue and not self._stopping:
                self._ready.wait()
            if not self._queue:
                return None
            item = self._queue.popleft()
            if item is self._last_lost:
                self._last_lost = None
            if isinstance(item, _FrameItem):
                self._frames -= 1
            elif isinstance(item, ResultRecord):
                self._results -= 1
            elif isinstance(item, _Marker):
                self._markers -= 1
            elif isinstance(item, tuple):
                self._command_bytes -= item[0]
                item = item[1]
            return item

    def _run(self) -> None:
        if self.settings.idle_priority:
            # SCHED_IDLE: the writer (and the encoder threads it starts, which inherit it) runs only on CPU
            # time that tracking leaves idle; when there is none its queue fills and frames are marked lost.
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
        gap: _Gap | None = None  # while writes fail (a full disk): what is skipped, written once they succeed
        while (item := self._next()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            if gap is not None and (not isinstance(item, _FrameItem) or time.monotonic() < gap.retry_at):
                self._skip(gap, item)
                continue
            skipped = None  # on a retry, what the failing writer skipped (once its records are written)
            try:
                if gap is not None:  # the retry: the timeline says first what went missing
                    for record in gap.records():
                        self._writer.record(record)
                    skipped, gap = gap, _Gap(retry_at=gap.retry_at)  # a failure from here is counted afresh
                self._write(item)
            except (OSError, SinkError) as e:  # a full disk must not stop tracking: say so, retry later
                with self._lock:
                    self.errors += 1
                if gap is None:
                    log.error("recording to %s failed (%s); tracking goes on, nothing is recorded until a write "
                              "succeeds (tried every %.0f s, in a new segment): free space or fix the directory",
                              self.settings.directory, e, RETRY_S)
                    gap = _Gap()
                gap.retry_at = time.monotonic() + RETRY_S
                self._skip(gap, item)
                self._writer.abandon()
                continue
            if skipped is not None:
                log.warning("recording resumed in a new segment after %d failed writes; %d frames, %d results and "
                            "%d commands were not recorded", self.errors, skipped.frames, skipped.results,
                            skipped.commands)
                gap = None
        self._writer.close()

    def _skip(self, gap: _Gap, item) -> None:
        """An item a failing writer does not write: counted, and remembered for the timeline."""
        with self._lock:
            if isinstance(item, _FrameItem):
                gap.lost(item.record["frame"], 1)
                self.lost += 1
            elif isinstance(item, _Lost):
                gap.lost(item.frame, item.count)
            elif isinstance(item, ResultRecord):
                gap.results += 1
                self.results_lost += 1
            elif isinstance(item, _Marker):
                gap.markers += 1
                self.markers_lost += 1
            elif item.get("kind") == "command":
                gap.commands += 1
                self.commands_lost += 1
            elif item.get("kind") == "dropped":
                gap.commands += item["commands"]
                gap.results += item["results"]
                gap.markers += item.get("markers", 0)

    def _write(self, item) -> None:
        if isinstance(item, _FrameItem):
            self._writer.frame(item.frame, item.record)
        elif isinstance(item, ResultRecord):
            self._writer.record(item.timeline())
        elif isinstance(item, _Marker):
            self._writer.record(item.record)
        elif isinstance(item, _Lost):
            self._writer.record({"kind": "lost", "frame": item.frame, "count": item.count})
        else:
            self._writer.record(item)


def _leave_idle_priority() -> None:
    """Every SCHED_IDLE thread of this process (writers, and the encoder threads they started) back to
    SCHED_OTHER, so a backlog is written at shutdown even on a saturated machine, where an idle thread gets no
    CPU at all. Unprivileged, this needs RLIMIT_NICE >= 20 (the shipped units set LimitNICE=+0)."""
    for entry in os.scandir("/proc/self/task"):
        try:
            tid = int(entry.name)
            if os.sched_getscheduler(tid) == os.SCHED_IDLE:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except (OSError, ValueError) as e:  # a thread that ended, or no permission: it drains at idle priority
            log.debug("thread %s stays at SCHED_IDLE: %s", entry.name, e)
