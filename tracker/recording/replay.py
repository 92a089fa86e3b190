"""`samtrack replay DIR`: a recording through a fresh tracker, published like a daemon; with `verify`, every
result compared with the recorded one (identity on the recording's precision, IoU on another)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.base import StreamInfo
from pipelines.errors import EndOfStream
from pipelines.frame import Frame
from pipelines.source import GstSource
from pipelines.spec import SourceSpec

from ..core.results import FrameResult
from ..protocol.masks import decode_mask
from .recording import RecordingError, object_digest, read_timeline, segment_paths, segments

log = logging.getLogger(__name__)


class RecordingSource:
    """A recording's frames, in order, as a `Source`. Commands met in the timeline go to `on_command` before
    the frame that followed them, recorded results to `on_expected`; frame numbers are the replay's own
    (shifted where the recording starts later, or lost a frame)."""

    def __init__(self, directory: Path, realtime: bool = False):
        self.directory = directory
        self.spec = SourceSpec("file", str(directory))
        self.realtime = realtime  # pace frames as they were captured
        self.info: StreamInfo | None = None
        self.dropped = self.reconnects = 0
        self.on_command: Callable[[dict, int], None] = lambda record, offset: None
        self.on_expected: Callable[[dict, int], None] = lambda record, offset: None
        self.warnings: list[str] = []
        self.offset = 0  # recorded frame number - replayed frame number
        self._segments: list[int] = []
        self._records: list[dict] = []
        self._video: GstSource | None = None
        self._replayed = 0
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
        first = next((r for r in self._records if r["kind"] == "frame"), None)
        if first is not None and first["frame"] > 0:
            self.offset = first["frame"]
            self._warn(f"the recording starts at frame {first['frame']} (earlier segments were rotated out): "
                       "objects prompted before are not in it")
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
            while not self._records:
                if not self._segments:
                    raise EndOfStream(str(self.directory))
                self._open(self._segments.pop(0))
            record = self._records.pop(0)
            kind = record["kind"]
            if kind == "command":
                self.on_command(record, self.offset)
            elif kind == "result":
                self.on_expected(record, self.offset)
            elif kind == "lost":
                self._warn(f"frame {record['frame']} was lost while recording (the recorder fell behind): "
                           "results after it can differ")
                self.offset += 1
            elif kind == "frame":
                return self._frame(record, timeout)

    def _frame(self, record: dict, timeout: float) -> Frame | None:
        try:
            decoded = self._video.read(10.0) if self._video is not None else None
        except EndOfStream:
            decoded = None
        if decoded is None:
            self._warn(f"segment video ends before frame {record['frame']} (truncated): replay stops at the last "
                       "complete frame")
            self._records, self._segments = [], []
            raise EndOfStream(str(self.directory))
        self._replayed += 1
        if not self.realtime:
            return Frame(record["source_index"], record["pts_ns"], time.monotonic_ns(), decoded.image)
        if self._pace is None:
            self._pace = (time.monotonic(), record["capture_ns"])
        t0, c0 = self._pace
        self._pending = (t0 + (record["capture_ns"] - c0) / 1e9, record, decoded.image)
        return self._when_due(timeout)

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
            if not video.is_file():
                raise RecordingError(f"{video} is missing: its timeline names frames")
            self._video = GstSource(str(video))
            self._video.start()

    def _warn(self, text: str) -> None:
        log.warning("%s", text)
        self.warnings.append(text)


@dataclass
class Verifier:
    """Compares each replayed result with the recorded one: digests (exact) or mask IoU (another path)."""

    exact: bool
    on_divergence: Callable[[str], None]
    divergence: str | None = None
    compared: int = 0
    ious: list[float] = field(default_factory=list)
    _results: dict[int, FrameResult] = field(default_factory=dict)

    def on_result(self, _frame: Frame, result: FrameResult) -> None:
        self._results[result.frame_index] = result
        for k in [k for k in self._results if k < result.frame_index - 8]:  # a few frames at most
            del self._results[k]

    def on_expected(self, record: dict, offset: int) -> None:
        if self.divergence is not None:
            return
        frame = record["frame"] - offset
        got = self._results.pop(frame, None)
        if got is None:
            return self._diverge(f"frame {record['frame']}: recorded, but the replay has no result for it")
        self.compared += 1
        want = {int(k): v for k, v in record["objects"].items()}
        if set(want) != set(got.objects):
            return self._diverge(f"frame {record['frame']}: objects {sorted(got.objects)} replayed, "
                                 f"{sorted(want)} recorded")
        for obj_id, w in want.items():
            o = got.objects[obj_id]
            if self.exact:
                if object_digest(o.packed_mask.tobytes(), o.score, o.bbox, o.area) != w["digest"]:
                    return self._diverge(_difference(record["frame"], obj_id, o, w))
            else:
                m = decode_mask(w["mask"]["counts"].encode(), "rle", o.height, o.width)
                union = (m | o.mask).sum()
                self.ious.append(float((m & o.mask).sum() / union) if union else 1.0)

    def _diverge(self, text: str) -> None:
        self.divergence = text
        self.on_divergence(text)


def _difference(frame: int, obj_id: int, got, want: dict) -> str:
    """What differs between a replayed object and its record, in words."""
    parts = []
    if round(got.score, 4) != want["score"]:
        parts.append(f"score {got.score:.4f} vs {want['score']:.4f} recorded")
    if (list(got.bbox) if got.bbox else None) != want["bbox"]:
        parts.append(f"box {list(got.bbox) if got.bbox else None} vs {want['bbox']}")
    m = decode_mask(want["mask"]["counts"].encode(), "rle", got.height, got.width)
    differing = int(np.count_nonzero(m != got.mask))
    if differing:
        parts.append(f"{differing} mask pixels differ (area {got.area} vs {want['area']})")
    return f"frame {frame}, object {obj_id}: " + ("; ".join(parts) or "the digests differ")
