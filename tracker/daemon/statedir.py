"""A stream's state on disk (`[state] dir`, `serve --state`): its objects' conditioning memories, written
whenever a prompt, a removal or a reset changes them, and its frame numbers, reserved ahead, so a restart
(a crash, the watchdog, an upgrade) goes on with the same objects and never reuses a frame number a client
may hold. Every write is atomic: a crash at any instant leaves the old file or the new one."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.state import MAX_FRAME, StateError, TrackerState, decode_state, encode_state, read_meta
from ..core.tracker import Tracker
from ..errors import TooManyObjectsError
from .atomic import write_atomically

log = logging.getLogger(__name__)

# Frame numbers reserved on disk ahead of the tracker (a few bytes written every LEASE_FRAMES / 2 frames, about
# 17 s at 30 fps): after a restart numbering resumes past the reservation, never on a number already used.
LEASE_FRAMES = 1000
LEASE_RETRY_FRAMES = 30  # after a failed reservation, frames before it is tried again (not every frame)
IDENTITY_KEYS = ("model", "weights_sha256", "image_size", "precision")  # what a state must match to be loaded


@dataclass
class StateReport:
    """What ping and stats say about a stream's state."""

    path: str
    restored_objects: list[int] | None = None  # None: nothing was restored at start
    restored_frame: int | None = None  # the first frame number after the restore
    writes: int = 0
    write_errors: int = 0
    last_bytes: int = 0  # size of the last state written
    set_aside: list[str] = field(default_factory=list)  # files refused at start (renamed, kept for inspection)


class StateStore:
    """`<dir>/<stream>.state` (the tracker's state) and `<dir>/<stream>.frames` (the frame reservation). With
    no directory nothing is kept, but a state can still be exported and imported."""

    def __init__(self, directory: Path | None, stream: str, identity: dict):
        self.directory = directory
        self.identity = identity  # model, weights digest, image size, precision, stream, samtrack version
        self.path = directory / f"{stream}.state" if directory is not None else None
        self.lease_path = directory / f"{stream}.frames" if directory is not None else None
        self.concepts_path = directory / f"{stream}.concepts" if directory is not None else None
        self.report = StateReport(str(self.path)) if directory is not None else None
        self._reserved = 0  # frame numbers reserved on disk up to here
        self._retry_lease_at = 0  # after a failed reservation, the frame number to try again at
        self._saved_version: int | None = None  # the tracker's state_version last written
        self._lock_file = None  # held for the process's life: one daemon per stream and directory

    # ---- start ----------------------------------------------------------------------------------
    def load_into(self, tracker: Tracker) -> None:
        """Before the first frame: the saved objects and frame numbering, or an empty tracker (a refused file is
        set aside with a log line); never raises for a bad file."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        start = self._read_lease()
        state = None
        if self.path.is_file():
            try:
                state = self.check(self.path.read_bytes(), tracker)
                tracker.restore(state, start)
            except (OSError, StateError, TooManyObjectsError) as e:  # a lowered max_objects too: kept aside
                self._set_aside(self.path, str(e))
                state = None
        if state is not None:
            self.report.restored_objects, self.report.restored_frame = state.object_ids, tracker.latest_frame + 1
            log.info("stream %s: restored %d object(s) %s from %s; frames continue at %d", self.identity["stream"],
                     len(state.objects), state.object_ids, self.path, self.report.restored_frame)
        elif start:
            tracker.restore(TrackerState(start, (), None))
            log.info("stream %s: no objects to restore; frames continue at %d", self.identity["stream"], start)
        self.reserve(tracker.latest_frame + 1 if tracker.latest_frame is not None else 0)

    def load_concepts(self) -> dict | None:
        """The stream's saved concepts (JSON, `StreamConcepts.to_dict`), None when there are none; an unreadable
        file is set aside."""
        if self.directory is None or not self.concepts_path.is_file():
            return None
        try:
            data = json.loads(self.concepts_path.read_text())
        except (OSError, ValueError) as e:
            self._set_aside(self.concepts_path, f"unreadable concepts: {e}")
            return None
        return data

    def refuse_concepts(self, why: str) -> None:
        """Saved concepts that do not fit (set aside, the stream starts without them)."""
        self._set_aside(self.concepts_path, why)

    def save_concepts(self, data: dict) -> None:
        """The stream's concepts, atomically (after each concept request and detector answer); a failed write is
        logged and counted, tracking goes on."""
        if self.directory is None:
            return
        try:
            write_atomically(self.concepts_path, json.dumps(data).encode())
        except OSError as e:
            self.report.write_errors += 1
            log.error("stream %s: writing its concepts to %s failed (%s); a restart now would restore older ones",
                      self.identity["stream"], self.concepts_path, e)
            return
        self.report.writes += 1

    def _take_lock(self) -> None:
        """Two daemons on one directory and stream would overwrite each other's state: the second is refused."""
        import fcntl

        self._lock_file = open(self.directory / f".{self.path.stem}.lock", "w")  # noqa: SIM115  (held till exit)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._lock_file.close()
            raise StateError(f"another samtrack daemon keeps stream {self.identity['stream']!r} in "
                             f"{self.directory}: give each daemon its own [state] dir (or another stream name)") \
                from e

    def close(self) -> None:
        """Release the directory (at shutdown; a process that ends releases it anyway)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def check(self, data: bytes, tracker: Tracker) -> TrackerState:
        """The state in `data` if it was made for this model, its weights, size and precision; StateError
        saying what differs otherwise."""
        meta, tensors = read_meta(data)
        wrong = [f"{k} {meta.get(k)!r} (this daemon: {self.identity[k]!r})" for k in IDENTITY_KEYS
                 if meta.get(k) != self.identity[k]]
        if wrong:
            raise StateError("made for another model: " + ", ".join(wrong))
        state = decode_state(meta, tensors, tracker.device)
        probe = tracker.share(**dataclasses.asdict(tracker.options))  # this stream's options: its max_objects
        probe.restore(state)  # shapes and frame numbers must fit before anything is replaced
        return state

    def _read_lease(self) -> int:
        try:
            reserved = json.loads(self.lease_path.read_text())["reserved"]
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as e:
            self._set_aside(self.lease_path, f"unreadable frame reservation: {e}")
            return 0
        if isinstance(reserved, bool) or not isinstance(reserved, int) or not 0 <= reserved <= MAX_FRAME:
            self._set_aside(self.lease_path, f"frame reservation {reserved!r} is not an integer in 0..{MAX_FRAME}")
            return 0
        return reserved

    def _set_aside(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.set-aside-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            os.replace(path, aside)
        except OSError as e:
            log.error("stream %s: %s is refused (%s) and cannot be renamed: %s", self.identity["stream"], path,
                      why, e)
            return
        self.report.set_aside.append(str(aside))
        log.error("stream %s: %s refused (%s): set aside as %s; the stream starts without it",
                  self.identity["stream"], path, why, aside.name)

    # ---- running --------------------------------------------------------------------------------
    def save(self, tracker: Tracker) -> None:
        """After a prompt, removal or reset: the tracker's state, atomically. A failed write (a full disk) is
        logged and counted; tracking goes on. Nothing is written when nothing it keeps changed (a correction on
        a tracked frame is no conditioning frame)."""
        if self.directory is None or tracker.state_version == self._saved_version:
            return
        try:
            data = self.encode(tracker)
        except Exception:  # noqa: BLE001  (the memory encoder runs for pending prompts: a device error, a bug)
            self.report.write_errors += 1
            log.exception("stream %s: its state could not be made (encoding the memory of its pending prompts "
                          "failed); tracking goes on, a restart now would restore an older state",
                          self.identity["stream"])
            return
        try:
            write_atomically(self.path, data)
        except OSError as e:
            self.report.write_errors += 1
            log.error("stream %s: writing its state to %s failed (%s); tracking goes on, a restart now would "
                      "restore an older state: free space or fix the directory", self.identity["stream"],
                      self.path, e)
            return
        self.report.writes += 1
        self.report.last_bytes = len(data)
        self._saved_version = tracker.state_version

    def encode(self, tracker: Tracker) -> bytes:
        """The tracker's state as bytes (what `save` writes and `export_state` sends)."""
        state = tracker.snapshot()
        ahead = max(0, self._reserved - state.next_frame)  # numbers reserved count as time passed, as on restore
        return encode_state(TrackerState(state.next_frame + ahead, state.objects, state.maskmem_pos,
                                         state.position + ahead), self.identity)

    def accept(self, data: bytes, tracker: Tracker, next_frame: int | None = None) -> TrackerState:
        """import_state: another daemon's state for this stream, checked, then in place of the stream's own
        objects (its window is emptied, numbering goes on past both: `next_frame` is the stream's next number,
        by default the one after the tracker's latest frame) and saved."""
        state = self.check(data, tracker)
        if next_frame is None:
            next_frame = tracker.latest_frame + 1 if tracker.latest_frame is not None else 0
        tracker.restore(state, next_frame)
        self.reserve(tracker.latest_frame + 1)
        self.save(tracker)
        log.info("stream %s: imported %d object(s) %s; frames continue at %d", self.identity["stream"],
                 len(state.objects), state.object_ids, tracker.latest_frame + 1)
        return state

    def reserve(self, next_frame: int) -> None:
        """Called with each new frame number: extends the reservation before the tracker reaches it."""
        if self.directory is None or next_frame < max(self._reserved - LEASE_FRAMES // 2, self._retry_lease_at):
            return
        reserved = next_frame + LEASE_FRAMES
        try:
            write_atomically(self.lease_path, json.dumps({"reserved": reserved}).encode())
        except OSError as e:
            self.report.write_errors += 1
            self._retry_lease_at = next_frame + LEASE_RETRY_FRAMES
            log.error("stream %s: reserving frame numbers in %s failed (%s): after a restart now, frame numbers "
                      "could repeat; free space or fix the directory", self.identity["stream"], self.lease_path, e)
            return
        self._reserved = reserved
