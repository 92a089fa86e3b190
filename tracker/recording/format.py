"""A recording's format: what `samtrack serve --record DIR` writes and `samtrack replay DIR` reads.

DIR/sessions/NNNNNN.json: the manifest of each daemon run that recorded here (a session): the model, a
digest of its weights, the tracker's options, precision, backend (and which parts it ran), device, threads,
samtrack's version.
DIR/manifest.json: the newest session's manifest. DIR/states/*.state: tracker states a session started
from (a daemon restored after a restart) or imported (`import_state`), named by their content's digest.
DIR/NNNNNN.mkv: frames that entered the tracker, FFV1 (lossless) in Matroska. DIR/NNNNNN.jsonl: the same
segment's timeline, one record a line, in order:
  {"kind": "session", "session", "continues"}                       first line of every segment
  {"kind": "frame", "frame", "source_index", "capture_ns", "pts_ns"} a frame in the .mkv, in order
  {"kind": "lost", "frame", "count"}                                 frames the recorder could not keep
  {"kind": "command", "after_frame", "op", "args", "mask", "reply"}  an accepted state-changing request
                                                                     (import_state: args.state names its file)
  {"kind": "result", "frame", "source", "key_frame", "objects": {id: {"digest", "mask", ...}}}
                                                                     what was published for a frame: the model's
                                                                     result ("source": "model") or masks moved
                                                                     from key_frame ("motion")
  {"kind": "key", "frame"}                                           the model took this frame (answered by motion)
  {"kind": "seeded", "seed", "frame"}                                the motion thread took the stream's seed-th
                                                                     model result (of that frame), between frames
  {"kind": "dropped", "commands", "results", "markers"}               records the recorder had to drop
  {"kind": "skipped", "frame"}                                       the motion thread did not carry this frame
A session starts with a segment whose session record has "continues": false (a fresh tracker, frame
numbers from 0); rotation starts segments that continue it. Format 1 (no sessions) reads as one session.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.results import FrameResult
from ..errors import SamtrackError
from ..protocol import messages
from ..protocol.masks import encode_mask

FORMAT = 2
READS = (1, 2)  # formats this samtrack replays
MANIFEST = "manifest.json"
SESSIONS = "sessions"
STATES = "states"
RECORDED_OPS = frozenset({"add_points", "add_box", "add_mask", "remove_object", "reset", "import_state"})


class RecordingError(SamtrackError):
    """A recording that is missing, truncated, corrupted, or made with another model or version."""

    code = "bad_recording"


def segment_paths(directory: Path, n: int) -> tuple[Path, Path]:
    """The video and timeline files of segment n."""
    return directory / f"{n:06d}.mkv", directory / f"{n:06d}.jsonl"


def numbered(directory: Path, suffix: str) -> list[int]:
    """The numbers of the files NNNNNN<suffix> in directory (six digits or more: 1000000 follows 999999),
    ascending."""
    return sorted(int(p.stem) for p in directory.glob(f"*{suffix}") if re.fullmatch("[0-9]{6,}", p.stem))


def segments(directory: Path) -> list[int]:
    """Numbers of the segments present, oldest first."""
    return numbered(directory, ".jsonl")


def object_digest(packed_mask: bytes, score: float, bbox, area: int) -> str:
    """What a published object's result is, as one hash: its mask bits, score, box and area."""
    h = hashlib.sha256(packed_mask)
    h.update(json.dumps([round(float(score), 6), list(bbox) if bbox else None, int(area)]).encode())
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class ObjectRecord:
    """One object of a published result, as the recorder keeps it: host bytes only, no tensor."""

    obj_id: int
    score: float
    bbox: tuple[int, int, int, int] | None
    area: int
    packed_mask: bytes
    height: int
    width: int


@dataclass(frozen=True)
class ResultRecord:
    """A published result, light enough to queue for the recorder's writer."""

    frame: int
    objects: tuple[ObjectRecord, ...]
    source: str = "model"
    key_frame: int | None = None

    @classmethod
    def of(cls, result: FrameResult) -> ResultRecord:
        key = result.key if result.source == "model" else result.key_frame  # None: nothing carried yet
        return cls(result.frame_index, tuple(
            ObjectRecord(o.obj_id, o.score, o.bbox, o.area, o.packed_mask.tobytes(), o.height, o.width)
            for o in result.objects.values()), result.source, key)

    def timeline(self) -> dict:
        """Its timeline record: per object id, its entry as `samtrack track --masks` writes it (summary and
        COCO RLE mask, for IoU) and its digest (for identity)."""
        import numpy as np

        objects = {}
        for o in self.objects:
            bits = np.unpackbits(np.frombuffer(o.packed_mask, np.uint8), count=o.height * o.width)
            rle = encode_mask(bits.reshape(o.height, o.width).view(bool), "rle").decode("ascii")
            objects[str(o.obj_id)] = {**messages.summary_fields(o.obj_id, o.score, o.bbox, o.area),
                                      "mask": {"size": [o.height, o.width], "counts": rle},
                                      "digest": object_digest(o.packed_mask, o.score, o.bbox, o.area)}
        return {"kind": "result", "frame": self.frame, "source": self.source, "key_frame": self.key_frame,
                "objects": objects}


@dataclass(frozen=True)
class Manifest:
    """How one session of a recording was made."""

    samtrack: str
    model: str
    image_size: int
    weights_sha256: str
    options: dict
    precision: str
    threads: int
    stream: str
    backend: str = "torch"  # the engines that ran (format 1 recorded only torch)
    engines: dict[str, str] | None = None  # part -> the backend that ran it (None, older: every part on `backend`)
    device: str = "cpu"
    batch_streams: bool = False  # frames encoded in one batch with other streams' (rounding differs)
    session: int = 0
    restored_state: str | None = None  # the tracker state the session started from (a file in the recording)
    first_frame: int = 0  # the session's first frame number (after a restart, numbering goes on from a reservation)
    # "motion": every frame recorded, those the model did not take answered by motion (key and seeded records);
    # "drop": the model's frames only (format 2 before key frames: always)
    between_key_frames: str = "drop"
    motion_frames_kept: int = 30  # frames answered by motion kept for prompts (a replay keeps at least as many)

    def write(self, directory: Path) -> None:
        """sessions/<session>.json and manifest.json, each replaced atomically."""
        text = json.dumps({"format": FORMAT, **dataclasses.asdict(self)}, indent=2) + "\n"
        (directory / SESSIONS).mkdir(exist_ok=True)
        for path in (session_path(directory, self.session), directory / MANIFEST):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    @classmethod
    def read(cls, directory: Path, session: int | None = None) -> Manifest:
        """The newest session's manifest, or the given session's."""
        if not directory.is_dir():
            raise RecordingError(f"no recording at {directory}: not a directory")
        p = directory / MANIFEST if session is None else session_path(directory, session)
        if session is not None and not (directory / SESSIONS).is_dir():  # format 1: one session, manifest.json
            p = directory / MANIFEST
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise RecordingError(f"{p} is missing: not a samtrack recording (or not started)") from e
        except (OSError, ValueError) as e:
            raise RecordingError(f"{p} is unreadable: {e}") from e
        if data.get("format") not in READS:
            raise RecordingError(f"{p}: recording format {data.get('format')!r}, this samtrack reads "
                                 f"{', '.join(map(str, READS))}")
        data.pop("format")
        try:
            return cls(**data)
        except TypeError as e:
            raise RecordingError(f"{p}: {e}") from e

    def compiled(self) -> tuple[str, ...] | None:
        """The parts `backend` ran (the others ran on torch); None: every part it runs (a recording without
        `engines`)."""
        if self.engines is None:
            return None
        return tuple(part for part, backend in self.engines.items() if backend == self.backend)

    def exact_for(self, precision: str, backend: str, device: str, threads: int, batch_streams: bool,
                  engines: dict[str, str] | None = None) -> bool:
        """Whether a replay with these settings (engines: its parts' backends) can reproduce this session bit for
        bit."""
        kind = device.split(":")[0]
        same_threads = kind != "cpu" or self.threads == threads  # CPU kernels split their sums by thread
        same_parts = self.engines is None or engines is None or self.engines == engines
        return same_threads and same_parts and (self.precision, self.backend, self.device.split(":")[0],
                                                self.batch_streams) == (precision, backend, kind, batch_streams)


def keep_state(directory: Path, data: bytes) -> str:
    """A tracker state's bytes stored in the recording (once per content); its path relative to it."""
    name = f"{STATES}/{hashlib.sha256(data).hexdigest()[:24]}.state"
    path = directory / name
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return name


def segment_refs(directory: Path, n: int) -> tuple[int | None, set[str]]:
    """Segment n's session (None: unreadable) and the imported states its commands name."""
    session, states = None, set()
    try:
        with open(segment_paths(directory, n)[1]) as f:
            for line in f:
                if '"session"' not in line and '"import_state"' not in line:
                    continue  # frames and results: most of a timeline, never a reference
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a last line cut short
                if r.get("kind") == "session" and session is None:
                    session = r.get("session")
                elif r.get("kind") == "command" and r.get("op") == "import_state":
                    states.add(str(r.get("args", {}).get("state")))
    except OSError:
        pass
    return session, states


def session_path(directory: Path, session: int) -> Path:
    return directory / SESSIONS / f"{session:06d}.json"


def sessions(directory: Path) -> list[Manifest]:
    """Every session's manifest (format 1: the one manifest.json)."""
    numbers = numbered(directory / SESSIONS, ".json")
    return [Manifest.read(directory, n) for n in numbers] or [Manifest.read(directory)]


def next_session(directory: Path) -> int:
    """The number of a new session in this directory (one more than any recorded)."""
    numbers = numbered(directory / SESSIONS, ".json")
    legacy = 1 if not numbers and (directory / MANIFEST).is_file() else 0  # format 1: session 0 exists
    return max(numbers, default=legacy - 1) + 1


def read_timeline(path: Path) -> tuple[list[dict], bool]:
    """A segment's records, and whether its last line was cut short (then dropped)."""
    lines = path.read_text().splitlines()
    records, truncated = [], False
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                truncated = True
                break
            raise RecordingError(f"{path}, line {i + 1}: not a record ({e})") from e
    return records, truncated
