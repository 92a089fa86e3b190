"""`samtrack track`: a source through the tracker with prompts on given frames, to an overlaid video
and/or per-frame masks (JSON lines), with a progress bar."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipelines.base import Source
from pipelines.errors import EndOfStream, SourceTimeoutError
from pipelines.overlay import OverlayObject, draw_overlay

from ..core.results import FrameResult
from ..core.tracker import Tracker
from ..errors import PromptError
from ..protocol.messages import result_record
from .interrupt import StopOnInterrupt
from .plan import Prompt

log = logging.getLogger(__name__)

FRAME_TIMEOUT_S = 30.0  # a file source that gives nothing for this long is stuck (decoders stall on broken files)
DEFAULT_FPS = 25.0  # output rate when the source does not say


@dataclass(frozen=True)
class TrackSummary:
    frames: int
    seconds: float
    objects: list[int]
    interrupted: bool = False  # Ctrl-C: the outputs hold the frames tracked until then (closed, valid)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def apply_prompts(tracker: Tracker, prompts: list[Prompt]) -> FrameResult:
    """The prompts of one frame (the tracker's latest); the result after the last of them."""
    result = None
    for p in prompts:
        try:
            if p.box is not None:
                result = tracker.add_box(p.obj, p.box, points=p.points or None, labels=p.labels or None)
            else:
                result = tracker.add_points(p.obj, p.points, p.labels)
        except PromptError as e:
            raise PromptError(f"object {p.obj} on frame {p.frame}: {e}") from e
    return result


def track_source(source: Source, tracker: Tracker, prompts: list[Prompt], video: Path | None = None,
                 masks: Path | None = None, max_frames: int | None = None, total: int | None = None,
                 progress: bool = True, key_frame_every: int = 1) -> TrackSummary:
    """Every frame of `source` (up to max_frames) tracked, prompts applied on their frames, written out. With
    key_frame_every N > 1 the model runs on every Nth frame (and on prompted frames); the frames between are
    answered by its masks carried by motion (tracker/motion/), marked so in the masks file."""
    from pipelines.sinks import VideoFileSink

    from ..motion.carrier import Carrier

    if key_frame_every < 1:
        raise ValueError(f"key_frame_every must be >= 1, got {key_frame_every}")
    carrier: Carrier | None = None
    pending = sorted(prompts, key=lambda p: p.frame)
    info = source.start()
    sink = jsonl = None
    frames, t0, interrupted = 0, time.monotonic(), False
    try:
        if masks is not None:
            jsonl = open(masks, "w")  # noqa: SIM115  (closed in finally, with the sink)
        bar = tqdm(total=min(x for x in (total, max_frames) if x) if (total or max_frames) else None,
                   unit="frame", disable=not progress, desc="tracking")
        with bar, StopOnInterrupt() as stop:
            while (max_frames is None or frames < max_frames) and not stop.requested:
                try:
                    frame = source.read(FRAME_TIMEOUT_S)
                except EndOfStream:
                    break
                if frame is None:
                    raise SourceTimeoutError(f"no frame from the source within {FRAME_TIMEOUT_S:.0f} s")
                now = [p for p in pending if p.frame == frames]
                if key_frame_every > 1 and carrier is None:
                    carrier = Carrier(frame.width, frame.height)
                if carrier is not None:
                    carrier.add(frames, frame.capture_ns, frame.image)
                if carrier is None or now or frames % key_frame_every == 0:
                    result = tracker.step(frame.image, number=frames)
                    if now:
                        result = apply_prompts(tracker, now)
                        pending = [p for p in pending if p.frame != frames]
                    if carrier is not None:
                        carrier.seed(result)
                else:
                    result = carrier.carry()
                if video is not None:
                    if sink is None:
                        fps = info.fps if info is not None and info.fps else DEFAULT_FPS
                        sink = VideoFileSink(video, frame.width, frame.height, fps)
                    sink.push(draw_overlay(frame.image, [OverlayObject(o.obj_id, o.mask, o.score)
                                                         for o in result.objects.values()]))
                if jsonl is not None:
                    jsonl.write(json.dumps(result_record(result)) + "\n")
                frames += 1
                bar.update()
            interrupted = stop.requested
    except KeyboardInterrupt:  # a second Ctrl-C: the outputs are closed below all the same
        interrupted = True
    finally:
        source.stop()
        if sink is not None:
            sink.close()
        if jsonl is not None:
            jsonl.close()
    if pending and not interrupted:
        late = ", ".join(f"object {p.obj} on frame {p.frame}" for p in pending)
        raise PromptError(f"the video ended after {frames} frames (0..{frames - 1}) before these prompts: {late}. "
                          f"Outputs hold the {frames} frames tracked.")
    return TrackSummary(frames, time.monotonic() - t0, tracker.objects, interrupted)
