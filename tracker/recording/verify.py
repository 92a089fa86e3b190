"""`samtrack replay --verify`: each replayed result compared with the recorded one, session by session.

Identity (digests) where the replay can reproduce the session bit for bit (same precision, backend, device
kind, thread count, stream batching) and no frame of it was lost; mask IoU otherwise, against the
tolerance contract of docs/engines.md (mean IoU over the compared frames)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipelines.frame import Frame

from ..core.results import FrameResult
from ..protocol.masks import decode_mask
from .format import object_digest
from .replay import FrameMap

MIN_MEAN_IOU = 0.98  # docs/engines.md's contract for a path that is not bit-exact
GAPS = {"commands": "the recorder dropped a command here", "truncated": "a segment of the recording was cut short",
        "markers": "the recorder dropped a record of when the model took a frame or the motion thread a seed",
        "seeds": "the recording's motion thread took a model result the replay never made",
        "rotated": "the session's first segments were rotated out (objects prompted there are missing)"}
# Replayed results waiting for their recorded twin, in frames: a recorded result follows its frame closely (in a
# session answered by motion, within the frames a prompt's frame lies ahead of the model's).
KEPT_RESULTS = 64


@dataclass
class Verifier:
    """Compares results; `divergence` names the first difference, `unverified` why a session stopped being
    comparable (a command the recorder dropped, a command naming a lost frame)."""

    on_divergence: Callable[[str], None]
    exact: bool = True  # the current session can be reproduced bit for bit
    divergence: str | None = None
    identical: int = 0  # results compared by digest
    identical_motion: int = 0  # ... of them answers by motion
    ious: list[float] = field(default_factory=list)  # per object and frame compared by IoU
    iou_frames: int = 0
    skipped: int = 0  # recorded results of frames the replay never had (lost, or after a dropped command)
    unverified: list[str] = field(default_factory=list)
    _gap: bool = False  # a frame of this session was lost: identity is out of reach from here
    _stopped: bool = False  # this session cannot be compared any more
    _results: dict[tuple[int, str], FrameResult] = field(default_factory=dict)  # (frame, source) -> replayed

    @property
    def compared(self) -> int:
        return self.identical + self.iou_frames

    def session(self, exact: bool) -> None:
        """A new session begins (a fresh tracker, frame numbers from 0)."""
        self.exact, self._gap, self._stopped = exact, False, False
        self._results.clear()

    def gap(self, what: str) -> None:
        """Frames were lost (IoU from here), commands were dropped or a segment was cut short (nothing of the
        session is comparable from here)."""
        if what == "lost":
            self._gap = True
        else:
            self.stop_session(GAPS[what])

    def stop_session(self, why: str) -> None:
        self._stopped = True
        self.unverified.append(why)

    def on_result(self, _frame: Frame, result: FrameResult) -> None:
        """A replayed result: the model's on a frame it ran on, or masks carried by motion."""
        self._results[(result.frame_index, result.source)] = result
        for k in [k for k in self._results if k[0] < result.frame_index - KEPT_RESULTS]:
            del self._results[k]

    def on_expected(self, record: dict, frames: FrameMap) -> None:
        if self.divergence is not None:
            return
        frame = frames.replayed(record["frame"])
        if frame is None or self._stopped:
            self.skipped += 1
            return
        source = record.get("source", "model")
        got = self._results.pop((frame, source), None)
        if got is None:
            return self._diverge(f"frame {record['frame']}: recorded ({source}), but the replay has no such result")
        want = {int(k): v for k, v in record["objects"].items()}
        if set(want) != set(got.objects):
            return self._diverge(f"frame {record['frame']}: objects {sorted(got.objects)} replayed, "
                                 f"{sorted(want)} recorded")
        if self.exact and not self._gap:
            for obj_id, w in want.items():
                o = got.objects[obj_id]
                if object_digest(o.packed_mask.tobytes(), o.score, o.bbox, o.area) != w["digest"]:
                    return self._diverge(_difference(record["frame"], obj_id, o, w))
            self.identical += 1
            self.identical_motion += source == "motion"
            return
        self.iou_frames += 1
        for obj_id, w in want.items():
            o = got.objects[obj_id]
            m = decode_mask(w["mask"]["counts"].encode(), "rle", o.height, o.width)
            union = (m | o.mask).sum()
            self.ious.append(float((m & o.mask).sum() / union) if union else 1.0)

    def finish(self) -> None:
        """After the last result: the IoU part against the contract."""
        if self.divergence is None and self.ious and float(np.mean(self.ious)) < MIN_MEAN_IOU:
            self._diverge(f"mean mask IoU {np.mean(self.ious):.4f} over {self.iou_frames} frames compared by IoU "
                          f"is below the contract's {MIN_MEAN_IOU}")

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
