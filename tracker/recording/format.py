"""A recording's format: what `samtrack serve --record DIR` writes and `samtrack replay DIR` reads.

DIR/manifest.json: the model, a digest of its weights, the tracker's options, precision and threads,
samtrack's version. DIR/NNNNNN.mkv: the frames that entered the tracker, FFV1 (lossless) in Matroska.
DIR/NNNNNN.jsonl: the same segment's timeline, one record a line, in the order things happened:
  {"kind": "frame", "frame", "source_index", "capture_ns", "pts_ns"}   a frame in the .mkv, in order
  {"kind": "lost", "frame"}                                            a frame the recorder could not keep
  {"kind": "command", "after_frame", "op", "args", "mask", "reply"}    an accepted state-changing request
  {"kind": "result", "frame", "objects": {id: {"digest", "mask", ...}}} what was published for a frame
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..core.results import FrameResult
from ..errors import SamtrackError
from ..protocol import messages

FORMAT = 1
MANIFEST = "manifest.json"
RECORDED_OPS = frozenset({"add_points", "add_box", "add_mask", "remove_object", "reset"})  # what changes state


class RecordingError(SamtrackError):
    """A recording that is missing, truncated, corrupted, or made with another model or version."""

    code = "bad_recording"


def segment_paths(directory: Path, n: int) -> tuple[Path, Path]:
    """The video and timeline files of segment n."""
    return directory / f"{n:06d}.mkv", directory / f"{n:06d}.jsonl"


def segments(directory: Path) -> list[int]:
    """Numbers of the segments present, oldest first."""
    return sorted(int(p.stem) for p in directory.glob("[0-9]" * 6 + ".jsonl"))


def object_digest(packed_mask: bytes, score: float, bbox, area: int) -> str:
    """What a published object's result is, as one hash: its mask bits, score, box and area."""
    h = hashlib.sha256(packed_mask)
    h.update(json.dumps([round(float(score), 6), list(bbox) if bbox else None, int(area)]).encode())
    return h.hexdigest()[:32]


def timeline_result(result: FrameResult) -> dict:
    """The timeline record of a published result: per object id, its entry as `samtrack track --masks`
    writes it (summary and COCO RLE mask, for IoU) and its digest (for identity)."""
    objects = {}
    for entry in messages.result_record(result)["objects"]:
        o = result.objects[entry["id"]]
        objects[str(o.obj_id)] = {**entry, "digest": object_digest(o.packed_mask.tobytes(), o.score, o.bbox, o.area)}
    return {"kind": "result", "frame": result.frame_index, "objects": objects}


@dataclass(frozen=True)
class Manifest:
    """How a recording was made."""

    samtrack: str
    model: str
    image_size: int
    weights_sha256: str
    options: dict
    precision: str
    threads: int
    stream: str

    def write(self, directory: Path) -> None:
        tmp = directory / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps({"format": FORMAT, **self.__dict__}, indent=2) + "\n")
        tmp.replace(directory / MANIFEST)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        p = directory / MANIFEST
        if not directory.is_dir():
            raise RecordingError(f"no recording at {directory}: not a directory")
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise RecordingError(f"{p} is missing: not a samtrack recording (or not started)") from e
        except (OSError, ValueError) as e:
            raise RecordingError(f"{p} is unreadable: {e}") from e
        if data.get("format") != FORMAT:
            raise RecordingError(f"{p}: recording format {data.get('format')!r}, this samtrack reads {FORMAT}")
        data.pop("format")
        try:
            return cls(**data)
        except TypeError as e:
            raise RecordingError(f"{p}: {e}") from e


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
