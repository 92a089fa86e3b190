"""Serving command requests: each op applied to the tracker, answered with a result or a typed error."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import protocol as P
from ..core.results import FrameResult
from ..core.tracker import Tracker
from ..errors import SamtrackError
from ..protocol import messages
from .metrics import Metrics
from .stats import Stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handled:
    """One request served: the reply frame, and what was asked and answered when it succeeded."""

    reply: bytes
    op: str | None = None
    args: dict | None = None
    frames: list[bytes] | None = None
    result: dict | None = None  # None for an error reply


class CommandHandler:
    """Turns one request's frames into one reply frame. Never raises: every failure is a reply."""

    def __init__(self, tracker: Tracker, stats: Stats, status: Callable[[], messages.DaemonStatus],
                 metrics: Metrics, publish_dropped: Callable[[], int]):
        self.tracker = tracker
        self.stats = stats
        self.metrics = metrics
        self._status = status  # daemon-level facts for ping/stats (source, fps, ...)
        self._publish_dropped = publish_dropped  # results the publisher dropped so far

    def handle(self, parts: list[bytes]) -> Handled:
        self.stats.requests += 1
        rid = None
        try:
            rid, op, args, frames = P.parse_request(parts)
            result = getattr(self, f"_op_{op}")(args, frames)
            return Handled(P.reply_ok(rid, result), op, args.model_dump(exclude_unset=True), frames, result)
        except P.ProtocolError as e:
            return Handled(self._error(e.request_id if e.request_id is not None else rid, e.code, e.message))
        except SamtrackError as e:
            return Handled(self._error(rid, e.code, str(e)))
        except Exception as e:  # a bug must not take the daemon down: answer and log it
            log.exception("internal error while serving a request")
            return Handled(self._error(rid, "internal", f"{type(e).__name__}: {e}"))

    def _error(self, rid, code: str, message: str) -> bytes:
        self.stats.errors[code] += 1
        self.metrics.errors.labels(self.metrics.stream, code).inc()
        return P.reply_error(rid, code, message)

    # ---- ops --------------------------------------------------------------------------------
    def _op_ping(self, args, frames) -> dict:
        return messages.status_result(self._status())

    def _op_add_points(self, a: P.PointsArgs, frames) -> dict:
        t0 = time.perf_counter()
        res = self.tracker.add_points(a.object, a.points, a.labels, frame_index=_frame(a.frame),
                                      clear_old_points=a.clear_old_points)
        return self._prompted(a.object, res, t0)

    def _op_add_box(self, a: P.BoxArgs, frames) -> dict:
        if (a.points is None) != (a.labels is None):
            raise P.ProtocolError("bad_request", "add_box args: give points and labels together, or neither")
        t0 = time.perf_counter()
        res = self.tracker.add_box(a.object, a.box, frame_index=_frame(a.frame),
                                   points=a.points or None, labels=a.labels or None)
        return self._prompted(a.object, res, t0)

    def _op_add_mask(self, a: P.MaskArgs, frames) -> dict:
        h, w = a.size
        mask = P.decode_mask(frames[0], a.encoding, h, w)
        t0 = time.perf_counter()
        res = self.tracker.add_mask(a.object, mask, frame_index=_frame(a.frame))
        return self._prompted(a.object, res, t0)

    def _op_remove_object(self, a: P.ObjectArgs, frames) -> dict:
        self.tracker.remove_object(a.object)
        return messages.ids_result(self.tracker.objects)

    def _op_reset(self, args, frames) -> dict:
        self.tracker.reset()
        return messages.ids_result([])

    def _op_list_objects(self, args, frames) -> dict:
        latest = self.tracker.latest_frame
        res = self.tracker.result() if latest is not None else None
        entries = [res.objects.get(i, i) if res is not None else i for i in self.tracker.objects]
        return messages.objects_result(latest, entries)

    def _op_stats(self, args, frames) -> dict:
        s = self.stats
        return messages.stats_result(
            self._status(), frames=s.frames, frame_errors=s.frame_errors, prompts=s.prompts, requests=s.requests,
            errors=s.errors, fps=s.fps, timings_ms=s.percentiles(), objects=len(self.tracker.objects),
            held_bytes=self.tracker.held_bytes(), retracked_frames=s.retracked_frames,
            publish_dropped=self._publish_dropped())

    def _prompted(self, obj_id: int, res: FrameResult, t0: float) -> dict:
        self.stats.prompts += 1
        self.metrics.prompts.labels(self.metrics.stream).inc()
        latest = self.tracker.latest_frame
        retracked = latest - res.frame_index if latest is not None else 0
        self.stats.retracked_frames += retracked
        return messages.prompt_result(obj_id, res, retracked, 1000.0 * (time.perf_counter() - t0))


def _frame(ref) -> int | None:
    return None if ref == "latest" else int(ref)
