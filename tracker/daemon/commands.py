"""Serving command requests: each op applied to the tracker, answered with a result or a typed error."""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import protocol as P
from ..concepts.types import ConceptSpec
from ..core.results import FrameResult
from ..core.state import StateError, read_meta
from ..errors import (
    FrameWindowError,
    NoDetectorError,
    PromptError,
    TooManyConceptsError,
    TooManyObjectsError,
    UnknownConceptError,
    UnknownObjectError,
)
from ..protocol import messages
from ..protocol.routing import Overview, route
from .detecting import DetectorHealth
from .metrics import UNROUTED, Metrics
from .statedir import StateStore
from .stream import Stream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handled:
    """One request served: the reply frame, and what was asked and answered when it succeeded."""

    reply: bytes
    op: str | None = None
    args: dict | None = None
    frames: list[bytes] | None = None
    result: dict | None = None  # None for an error reply
    stream: Stream | None = None  # the stream it was for, when it named (or needed) one
    reply_frames: list[bytes] = field(default_factory=list)  # binary frames after the reply (export_state)


@dataclass(frozen=True)
class WithFrames:
    """An op's result with binary frames to send after the reply."""

    result: dict
    frames: list[bytes]


class CommandHandler:
    """Turns one request's frames into one reply frame, routed to the stream it names (the only one when
    the daemon has one). Never raises: every failure is a reply."""

    def __init__(self, streams: dict[str, Stream], status: Callable[[Stream], messages.DaemonStatus],
                 metrics: Metrics, publish_dropped: Callable[[str], int],
                 detector_health: Callable[[], DetectorHealth | None]):
        self.streams = streams
        self.metrics = metrics
        self._status = status  # daemon-level facts for ping/stats (source, fps, ...)
        self._publish_dropped = publish_dropped  # a stream's results the publisher dropped so far
        self._detector_health = detector_health  # the detector's process (None: the daemon has none)
        self.unrouted_requests = 0  # requests that named no stream served here (several streams only)
        self.unrouted_errors: Counter = Counter()

    def handle(self, parts: list[bytes]) -> Handled:
        rid = stream = None
        counted = False
        try:
            rid, op, args, frames = P.parse_request(parts)
            stream = self._route(op, args, rid)
            self._count(stream)
            counted = True
            result = getattr(self, f"_op_{op}")(stream, args, frames) if stream else self._overview(op)
            extra = []
            if isinstance(result, WithFrames):
                result, extra = result.result, result.frames
            return Handled(P.reply_ok(rid, result), op, args.model_dump(exclude_unset=True), frames, result, stream,
                           extra)
        except P.ProtocolError as e:
            rid, code, message = e.request_id if e.request_id is not None else rid, e.code, e.message
        # The tracker's errors a request can meet, answered with their own (documented) codes; a test reads the
        # codes a reply may carry from this clause. Any other exception is a bug: `internal`, logged.
        except (PromptError, FrameWindowError, UnknownObjectError, TooManyObjectsError, StateError, NoDetectorError,
                UnknownConceptError, TooManyConceptsError) as e:
            code, message = e.code, str(e)
        except Exception as e:  # a bug must not take the daemon down: answer and log it
            log.exception("internal error while serving a request")
            code, message = "internal", f"{type(e).__name__}: {e}"
        if not counted:
            self._count(stream)
        self._count(stream, code)
        return Handled(P.reply_error(rid, code, message), stream=stream)

    def _route(self, op: str, args, rid) -> Stream | None:
        """The stream a request is for; None for ping/stats about every stream of a daemon with several."""
        name = route(op, args.stream, list(self.streams), rid)
        return None if name is None else self.streams[name]

    def _count(self, stream: Stream | None, code: str | None = None) -> None:
        """A request (code None) or an error reply, on its stream's counters: the only stream's when the
        daemon has one, the daemon's own when a request of a daemon with several names none it serves."""
        if stream is None and len(self.streams) == 1:
            stream = next(iter(self.streams.values()))
        if code is not None:
            self.metrics.errors.labels(stream.name if stream else UNROUTED, code).inc()
        if stream is None:
            if code is None:
                self.unrouted_requests += 1
            else:
                self.unrouted_errors[code] += 1
        elif code is None:
            stream.stats.requests += 1
        else:
            stream.stats.errors[code] += 1

    def _overview(self, op: str) -> dict:
        overview = Overview(op)
        for st in self.streams.values():
            overview.add(getattr(self, f"_op_{op}")(st, None, []))
        return overview.result(self.unrouted_requests, dict(self.unrouted_errors))

    # ---- ops --------------------------------------------------------------------------------
    def _op_ping(self, st: Stream, args, frames) -> dict:
        return messages.status_result(self._status(st))

    def _op_add_points(self, st: Stream, a: P.PointsArgs, frames) -> dict:
        t0, r0 = time.perf_counter(), st.tracker.retracked_frames
        check = functools.partial(st.tracker.check_prompt, a.object, points=a.points, labels=a.labels)
        res = st.tracker.add_points(a.object, a.points, a.labels, frame_index=st.model_frame(_frame(a.frame), check),
                                    clear_old_points=a.clear_old_points)
        return self._prompted(st, a.object, res, t0, r0)

    def _op_add_box(self, st: Stream, a: P.BoxArgs, frames) -> dict:
        t0, r0 = time.perf_counter(), st.tracker.retracked_frames
        check = functools.partial(st.tracker.check_prompt, a.object, points=a.points or None,
                                  labels=a.labels or None, box=a.box)
        res = st.tracker.add_box(a.object, a.box, frame_index=st.model_frame(_frame(a.frame), check),
                                 points=a.points or None, labels=a.labels or None)
        return self._prompted(st, a.object, res, t0, r0)

    def _op_add_mask(self, st: Stream, a: P.MaskArgs, frames) -> dict:
        h, w = a.size
        mask = P.decode_mask(frames[0], a.encoding, h, w)
        t0, r0 = time.perf_counter(), st.tracker.retracked_frames
        check = functools.partial(st.tracker.check_prompt, a.object, mask=mask)
        res = st.tracker.add_mask(a.object, mask, frame_index=st.model_frame(_frame(a.frame), check))
        return self._prompted(st, a.object, res, t0, r0)

    def _op_remove_object(self, st: Stream, a: P.ObjectArgs, frames) -> dict:
        st.tracker.remove_object(a.object)
        st.concepts.forget(a.object)
        return messages.ids_result(st.tracker.objects)

    def _op_reset(self, st: Stream, args, frames) -> dict:
        st.tracker.reset()
        st.concepts.forget()
        return messages.ids_result([])

    def _op_list_objects(self, st: Stream, args, frames) -> dict:
        # no frame in the window: before the first frame, or restored and not yet stepped (ids only)
        res = st.tracker.result() if st.tracker.window else None
        entries = [res.objects.get(i, i) if res is not None else i for i in st.tracker.objects]
        return messages.objects_result(res.frame_index if res is not None else None, entries, st.tags)

    def _op_add_concept(self, st: Stream, a: P.ConceptArgs, frames) -> dict:
        spec = ConceptSpec(a.text, a.every, a.every_s, a.threshold, a.max_objects, st.name)
        st.concepts.add(spec)
        return messages.concept_result(st.concepts.spec_fields(spec))

    def _op_remove_concept(self, st: Stream, a: P.TextArgs, frames) -> dict:
        st.concepts.remove(a.text)
        return messages.concepts_result(st.concepts.infos())

    def _op_list_concepts(self, st: Stream, args, frames) -> dict:
        return messages.concepts_result(st.concepts.infos())

    def _op_stats(self, st: Stream, args, frames) -> dict:
        s, health = st.stats, self._detector_health()
        return messages.stats_result(
            self._status(st), frames=s.frames, frame_errors=s.frame_errors, prompts=s.prompts, requests=s.requests,
            errors=s.errors, fps=s.fps, timings_ms=s.percentiles(), objects=len(st.tracker.objects),
            held_bytes=st.tracker.held_bytes(), retracked_frames=s.retracked_frames,
            publish_dropped=self._publish_dropped(st.name), motion_frames=s.motion_frames,
            answered_fps=s.answered_fps, between_key_frames="motion" if st.motion is not None else "drop",
            detector=st.concepts.detector_stats(health) if health is not None else None)

    def _op_export_state(self, st: Stream, args, frames) -> WithFrames:
        data = _store(st).encode(st.tracker)
        if len(data) > P.MAX_STATE_BYTES:  # what import_state takes (and below ZeroMQ's message cap)
            raise StateError(f"the state is {len(data) / 2**20:.0f} MiB, more than import_state takes "
                             f"({P.MAX_STATE_BYTES >> 20} MiB): move it as a file instead (copy <state dir>/"
                             f"{st.name}.state into the other daemon's state directory before it starts)")
        return WithFrames(messages.state_result(st.tracker.objects, read_meta(data)[0]["next_frame"], len(data)),
                          [data])

    def _op_import_state(self, st: Stream, args, frames) -> dict:
        state = _store(st).accept(frames[0], st.tracker, st.next_number)
        st.concepts.forget()
        st.renumber(st.tracker.latest_frame + 1)
        return messages.state_result(state.object_ids, st.tracker.latest_frame + 1, len(frames[0]))

    def _prompted(self, st: Stream, obj_id: int, res: FrameResult, t0: float, retracked_before: int) -> dict:
        st.stats.prompts += 1
        self.metrics.prompts.labels(st.name).inc()
        retracked = st.tracker.retracked_frames - retracked_before
        st.stats.retracked_frames += retracked
        return messages.prompt_result(obj_id, res, retracked, 1000.0 * (time.perf_counter() - t0),
                                      st.tracker.latest_frame, st.tags)


def _store(st: Stream) -> StateStore:
    if st.state is None:
        raise StateError(f"stream {st.name!r} has no state to export or import here (a replay)")
    return st.state


def _frame(ref) -> int | None:
    return None if ref == "latest" else int(ref)
