"""Serving command requests: each op applied to the tracker, answered with a result or a typed error."""

from __future__ import annotations

import logging
from collections.abc import Callable

from . import protocol as P
from .errors import SamtrackError
from .metrics import Metrics
from .publisher import object_summary
from .results import FrameResult
from .stats import Stats
from .tracker import Tracker

log = logging.getLogger(__name__)


class CommandHandler:
    """Turns one request's frames into one reply frame. Never raises: every failure is a reply."""

    def __init__(self, tracker: Tracker, stats: Stats, status: Callable[[], dict], metrics: Metrics | None = None):
        self.tracker = tracker
        self.stats = stats
        self.metrics = metrics
        self._status = status  # daemon-level facts for ping/stats (source, fps, ...)

    def handle(self, parts: list[bytes]) -> bytes:
        self.stats.requests += 1
        rid = None
        try:
            rid, op, args, frames = P.parse_request(parts)
            result = getattr(self, f"_op_{op}")(args, frames)
            return P.reply_ok(rid, result)
        except P.ProtocolError as e:
            return self._error(getattr(e, "request_id", rid), e.code, e.message)
        except SamtrackError as e:
            return self._error(rid, e.code, str(e))
        except Exception as e:  # a bug must not take the daemon down: answer and log it
            log.exception("internal error while serving a request")
            return self._error(rid, "internal", f"{type(e).__name__}: {e}")

    def _error(self, rid, code: str, message: str) -> bytes:
        self.stats.errors[code] += 1
        if self.metrics is not None:
            self.metrics.errors.labels(self.metrics.stream, code).inc()
        return P.reply_error(rid, code, message)

    # ---- ops --------------------------------------------------------------------------------
    def _op_ping(self, args, frames) -> dict:
        return {"pong": True, "protocol": P.PROTOCOL_VERSION, **self._status()}

    def _op_add_points(self, a: P.PointsArgs, frames) -> dict:
        res = self.tracker.add_points(a.object, a.points, a.labels, frame_index=_frame(a.frame),
                                      clear_old_points=a.clear_old_points)
        return self._prompted(a.object, res)

    def _op_add_box(self, a: P.BoxArgs, frames) -> dict:
        if (a.points is None) != (a.labels is None):
            raise P.ProtocolError("bad_request", "add_box args: give points and labels together, or neither")
        res = self.tracker.add_box(a.object, a.box, frame_index=_frame(a.frame),
                                   points=a.points or None, labels=a.labels or None)
        return self._prompted(a.object, res)

    def _op_add_mask(self, a: P.MaskArgs, frames) -> dict:
        h, w = a.size
        mask = P.decode_mask(frames[0], a.encoding, h, w)
        res = self.tracker.add_mask(a.object, mask, frame_index=_frame(a.frame))
        return self._prompted(a.object, res)

    def _op_remove_object(self, a: P.ObjectArgs, frames) -> dict:
        self.tracker.remove_object(a.object)
        return {"objects": self.tracker.objects}

    def _op_reset(self, args, frames) -> dict:
        self.tracker.reset()
        return {"objects": []}

    def _op_list_objects(self, args, frames) -> dict:
        latest = self.tracker.latest_frame
        res = self.tracker.result() if latest is not None else None
        objects = []
        for obj_id in self.tracker.objects:
            o = res.objects.get(obj_id) if res is not None else None
            objects.append(object_summary(o) if o is not None else {"id": obj_id})
        return {"frame": latest, "objects": objects}

    def _op_stats(self, args, frames) -> dict:
        s = self.stats
        return {
            **self._status(),
            "frames": s.frames, "frame_errors": s.frame_errors, "prompts": s.prompts, "requests": s.requests,
            "errors": dict(s.errors), "fps": round(s.fps, 3), "timings_ms": s.percentiles(),
            "objects": len(self.tracker.objects), "held_bytes": self.tracker.held_bytes(),
        }

    def _prompted(self, obj_id: int, res: FrameResult) -> dict:
        self.stats.prompts += 1
        if self.metrics is not None:
            self.metrics.prompts.labels(self.metrics.stream).inc()
        latest = self.tracker.latest_frame
        return {"frame": res.frame_index, "object": object_summary(res.objects[obj_id]),
                "objects": [object_summary(o) for o in res.objects.values()],
                "retracked": (latest - res.frame_index) if latest is not None else 0}


def _frame(ref) -> int | None:
    return None if ref == "latest" else int(ref)


