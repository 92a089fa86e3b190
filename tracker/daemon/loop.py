"""The daemon's loop: source -> tracker -> publisher for each of its streams in one process, with commands
served between frames, systemd notifications, Prometheus metrics and optional CurveZMQ security."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from pipelines.errors import EndOfStream, SourceError
from pipelines.frame import Frame

from ..core.batch import step_batch
from ..core.results import FrameResult
from ..errors import SamtrackError
from ..protocol.curve import CurveServer
from ..protocol.routing import split_envelope
from .carrying import Carried
from .commands import CommandHandler
from .concept_loop import ConceptLoop
from .detecting import DetectorWorker
from .feed import Numbered
from .metrics import Metrics
from .publisher import Publisher
from .sdnotify import Notifier
from .security import MAX_INBOUND_BYTES, MAX_SUBSCRIPTION_BYTES, PUB_HWM, ROUTER_HWM, bind
from .service import Service
from .signals import Interrupted, StopFlag
from .stream import PROMPT_OPS, STATE_OPS, Stream

log = logging.getLogger(__name__)

COMMANDS_PER_TURN = 32  # requests served between two turns at most: prompts never starve tracking
# Frames re-tracked for prompts on past frames, between two turns at most: each such prompt re-tracks
# up to a feature window, so a burst is spread over several frames instead of stalling the streams.
RETRACK_FRAMES_PER_TURN = 16
FRAME_WAIT_S = 0.02  # how long a turn without frames waits: bounds command latency while idle
# With several streams no one source can be waited on: each is polled, and a turn that found no frame
# sleeps this long (a frame waits at most this much longer).
POLL_S = 0.005
END_LINGER_MS = 1000  # at the end of the streams, how long the "end" messages may take to leave before exit
# At shutdown, how long the sources, the publisher and the recorders may take, all stopping together: under
# systemd's TimeoutStopSec (10 s in the shipped units), which then kills the process.
STOP_BUDGET_S = 8.0


@dataclass(frozen=True)
class DaemonSettings:
    """Everything the daemon needs besides its streams (built from the config by wiring.py)."""

    results: str  # PUB: results and previews
    commands: str  # ROUTER: requests and replies
    mask_encoding: str
    publish_queue: int  # results waiting for the publisher thread; 0: publish on the tracking thread
    metrics_address: str | None  # None: no metrics endpoint
    metrics_port: int
    curve: CurveServer | None
    watchdog_stall_s: float  # no frame for this long on every stream: stop systemd watchdog pings
    status_every_s: float
    batch_streams: bool = False  # the frames of a turn through the image encoder in one batch


def _stale(st: Stream, item: Numbered) -> bool:
    """A numbered frame the model is past: a prompt ran it on the frame already (or a state import numbered past
    it)."""
    latest = st.tracker.latest_frame
    return item.number >= 0 and latest is not None and item.number <= latest


def _number(item: Numbered) -> int | None:
    """The number the feed gave a frame (None: the tracker numbers it, the model taking every frame)."""
    return item.number if item.number >= 0 else None


class Daemon:
    """Runs until stop() (or SIGINT/SIGTERM once `install_signal_handlers` was called), or until every
    stream's source has ended."""

    def __init__(self, streams: list[Stream], settings: DaemonSettings, notifier: Notifier | None = None,
                 on_result: Callable[[Frame, FrameResult], None] | None = None,
                 detector: DetectorWorker | None = None):
        """on_result: called after each tracked frame (replay's verification); detector: the concepts' detector
        (started; the daemon stops it)."""
        if not streams or len({s.name for s in streams}) != len(streams):
            raise ValueError(f"a daemon needs streams with distinct names, got {[s.name for s in streams]}")
        self.streams = {s.name: s for s in streams}
        self.settings = settings
        self._on_result = on_result
        self.metrics = Metrics()
        self.notifier = notifier or Notifier()
        self.service = Service(self.notifier, self.metrics, settings.watchdog_stall_s, settings.status_every_s)
        self.metrics_port: int | None = None
        self._flag = StopFlag()
        self._ctx = zmq.Context()
        self._auth = settings.curve.start(self._ctx) if settings.curve else None
        self._pub = self._socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, PUB_HWM)
        self._pub.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
        self._cmd = self._socket(zmq.ROUTER)
        self._cmd.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES)
        self._cmd.setsockopt(zmq.RCVHWM, ROUTER_HWM)
        self.publisher = Publisher(self._pub, settings.mask_encoding, settings.publish_queue, self._published)
        for st in streams:
            self.publisher.add_stream(st.name, st.preview_every)
            st.carry_between_key_frames(functools.partial(self.seen_by_motion, st))
        self.concepts = ConceptLoop(detector, self.publisher, self.metrics, self._found)
        self.handler = CommandHandler(self.streams, self.status, self.metrics, self.publisher.dropped,
                                      self.concepts.health)
        self._turns = 0
        self._ended = False  # end messages were published

    @property
    def stream(self) -> Stream:
        """The first (for a one-stream daemon: the) stream."""
        return next(iter(self.streams.values()))

    def _socket(self, kind: int) -> zmq.Socket:
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if self.settings.curve:
            self.settings.curve.apply(s)
        return s

    def status(self, st: Stream):
        return st.status(list(self.streams), self.metrics_port)

    def install_signal_handlers(self) -> None:
        self._flag.install()

    def stop(self) -> None:
        """Stop after the current step (safe from any thread and from a signal handler)."""
        self._flag.stop()

    def run(self) -> None:
        """Bind, start the sources (raising if none can start), then loop until stopped."""
        s = self.settings
        try:
            bind(self._pub, s.results, curve=s.curve is not None)
            bind(self._cmd, s.commands, curve=s.curve is not None)
            if s.metrics_address is not None:
                self.metrics_port = self.metrics.serve(s.metrics_address, s.metrics_port)
                log.info("metrics on http://%s:%d/metrics", s.metrics_address, self.metrics_port)
            self._start_sources()
            log.info("serving %s: results on %s, commands on %s",
                     ", ".join(repr(n) for n, st in self.streams.items() if st.running), s.results, s.commands)
            while not self._flag.stopped:
                self._serve_commands()
                try:
                    self._flag.busy = True  # a stop may interrupt SAM's masks of an answer or its re-tracking
                    self.concepts.turn(self.streams)
                finally:
                    self._flag.busy = False
                if not self._turn():
                    log.info("no stream left running; exiting")
                    return
                self.service.tick(self.streams, self.concepts.health())
                for st in self.streams.values():
                    st.reserve_numbers()
        except Interrupted as e:
            log.info("%s: stopped in the middle of a tracking step or request", e)
        finally:
            self._flag.busy = False
            self.notifier.stopping()
            self.close()

    def _start_sources(self) -> None:
        """Each stream's source; one that cannot start is reported and the others run. With one stream
        (or none able to start) the error is raised: a service fails fast."""
        errors = []
        for st in self.streams.values():
            try:
                (st.feed or st.source).start()
                self.metrics.source_up.labels(st.name).set(1 if st.source.connected else 0)
            except (SourceError, SamtrackError, OSError) as e:
                if len(self.streams) == 1:
                    raise
                st.error = str(e)
                errors.append(e)
                self.metrics.source_up.labels(st.name).set(0)
                log.error("stream %r cannot start: %s; the other streams run", st.name, e)
        if len(errors) == len(self.streams):
            raise errors[0]

    def _turn(self) -> bool:
        """The newest frame of each stream that has one, tracked, starting one stream further each turn
        (round robin: no stream waits behind a busy one); False once no stream is left running."""
        running = [st for st in self.streams.values() if st.running]
        if not running:
            return False
        k = self._turns % len(running)
        self._turns += 1
        wait = FRAME_WAIT_S if len(running) == 1 else 0.0
        batch: list[tuple[Stream, Numbered]] = []
        tracked = False
        for st in running[k:] + running[:k]:
            try:
                item = st.read(wait)
            except EndOfStream:
                self._end(st, "end of stream")
                continue
            if item is None or self._flag.stopped or _stale(st, item):
                continue
            tracked = True
            if self.settings.batch_streams:
                batch.append((st, item))
            else:
                self._track(st, item)
        if len(batch) == 1:
            self._track(*batch[0])
        elif batch:
            self._track_batch(batch)
        if not tracked and len(running) > 1:
            time.sleep(POLL_S)  # a signal's handler runs as soon as it returns; the flag is read next turn
        return True

    def _end(self, st: Stream, reason: str) -> None:
        log.info("stream %r: %s after %d frames", st.name, reason, st.stats.frames)
        self.publisher.publish_end(st.name, st.tracker.latest_frame, reason)
        st.ended = True
        self._ended = True

    def close(self) -> None:
        """Everything stopped within STOP_BUDGET_S: recorders start writing their backlog and sources stop (each
        on a thread of its own: a camera's stop can take seconds) while the publisher sends what it has."""
        self.concepts.close()  # first: a detector call in flight is killed, not waited for
        deadline = time.monotonic() + STOP_BUDGET_S
        recorders = [st.recorder for st in self.streams.values() if st.recorder is not None]
        for r in recorders:
            r.stop()
        for st in self.streams.values():
            st.stop_threads()
        stopping = [threading.Thread(target=st.source.stop, name=f"stop-{name}", daemon=True)
                    for name, st in self.streams.items()]
        for t in stopping:
            t.start()
        # The publisher closes its socket in its own thread; one still stuck there keeps it (and the
        # context, which cannot end while a socket is open): the process exits without them.
        published = self.publisher.close(END_LINGER_MS if self._ended else 0)
        for t in stopping:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("%s: the source is still stopping at shutdown", t.name)
        for r in recorders:
            r.join(deadline)
        for st in self.streams.values():
            if st.state is not None:
                st.state.close()
        self._cmd.close(0)
        if self._auth is not None:
            self._auth.stop()
        if published:
            self._ctx.term()
        self.metrics.close()
        self.notifier.close()

    def _track(self, st: Stream, item: Numbered) -> None:
        t_start = time.monotonic_ns()
        if item.number >= 0:
            st.key_frame(item.number)
        try:
            self._flag.busy = True
            result = st.tracker.step(item.frame.image, number=_number(item))
        except Exception as e:
            self._failed(st, item.frame, e)
            return
        finally:
            self._flag.busy = False
        self._tracked(st, item.frame, result, t_start)

    def _track_batch(self, batch: list[tuple[Stream, Numbered]]) -> None:
        """Frames of several streams, their image encoding in one batch (batch_streams); a failure belongs to
        its own stream, the others' results are published."""
        t_start = time.monotonic_ns()
        for st, item in batch:
            if item.number >= 0:
                st.key_frame(item.number)
        try:
            self._flag.busy = True
            outcomes = step_batch([st.tracker for st, _ in batch], [item.frame.image for _, item in batch],
                                  [_number(item) for _, item in batch])
        finally:
            self._flag.busy = False
        for (st, item), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._failed(st, item.frame, outcome)
            else:
                self._tracked(st, item.frame, outcome, t_start)

    def _failed(self, st: Stream, frame: Frame, error: Exception) -> None:
        st.stats.frame_errors += 1
        self.metrics.frame_errors.labels(st.name).inc()
        log.error("stream %r: tracking failed on source frame %d; frame skipped", st.name, frame.index,
                  exc_info=error)

    def _tracked(self, st: Stream, frame: Frame, result: FrameResult, t_start: int) -> None:
        """A tracked frame published, recorded and counted."""
        stages = {"queue": (t_start - frame.capture_ns) / 1e6, **result.times.as_ms()}
        stages["step"] = (time.monotonic_ns() - t_start) / 1e6
        st.publish(result.frame_index, "model",
                   lambda: self.publisher.publish(st.name, frame, result, stages, st.dropped, tags=st.tags))
        if st.feed is None:  # else the motion thread remembers every frame
            st.remember(result.frame_index, frame)
        else:
            st.feed.stepped(stages["step"])
        st.tracked(frame, result)
        self.concepts.tracked(st, frame, result)
        if self._on_result is not None:
            self._on_result(frame, result)
        st.stats.record_frame(stages)
        self.metrics.observe_frame(st.name, stages)
        st.last_frame = time.monotonic()

    def seen_by_motion(self, st: Stream, carried: Carried) -> None:
        """A frame the motion thread took (called on it, every frame in order): remembered and recorded, and when
        answered by motion, published and counted."""
        frame, result, number = carried.item.frame, carried.result, carried.item.number
        st.remember(number, frame)
        if result is None:
            st.carried(frame, None, number, carried.skipped)
            return
        stages = {"queue": (time.monotonic_ns() - frame.capture_ns) / 1e6 - carried.motion_ms,
                  "motion": round(carried.motion_ms, 3)}
        age = (frame.capture_ns - carried.key_capture_ns) / 1e6 if carried.key_capture_ns is not None else 0.0
        sent = st.publish(number, "motion",
                          lambda: self.publisher.publish(st.name, frame, result, stages, st.dropped, age, st.tags))
        st.carried(frame, result if sent else None, number)  # an answer not sent is not recorded either
        st.stats.record_motion(stages["motion"])
        self.metrics.observe_motion(st.name, stages["motion"])

    def _published(self, stream: str, capture_ns: int, queue_ms: float, publish_ms: float) -> None:
        """A result left the socket (called in the publisher's thread)."""
        self.streams[stream].stats.record_stages({"publish_queue": queue_ms, "publish": publish_ms})
        self.metrics.observe_published(stream, publish_ms, (time.monotonic_ns() - capture_ns) / 1e9)

    def _serve_commands(self) -> None:
        """Requests waiting on the command socket, until none is left, COMMANDS_PER_TURN were served or
        their re-tracking reached RETRACK_FRAMES_PER_TURN frames; the rest wait for the next turn."""
        retracked_before = self._retracked()
        for _ in range(COMMANDS_PER_TURN):
            if self._retracked() - retracked_before >= RETRACK_FRAMES_PER_TURN:
                return
            try:
                envelope, parts = split_envelope(self._cmd.recv_multipart(flags=zmq.NOBLOCK))
            except zmq.Again:
                return
            latest = {name: st.tracker.latest_frame for name, st in self.streams.items()}
            try:
                self._flag.busy = True
                done = self.handler.handle(parts)
            finally:
                self._flag.busy = False
            st = done.stream
            if st is not None and done.result is not None:
                st.accepted(latest[st.name], done.op, done.args, done.frames, done.result)
                self.changed(st, done.op, done.result)
            try:
                self._cmd.send_multipart([*envelope, done.reply, *done.reply_frames], flags=zmq.NOBLOCK)
            except zmq.ZMQError as e:  # the client went away; nothing to answer
                log.debug("reply not sent: %s", e)

    def changed(self, st: Stream, op: str, result: dict) -> None:
        """After an accepted request that changed results: a prompted frame's result published again (a revision:
        the prompt's object is in it), and the newest model frame's when a prompt on a past frame re-tracked it;
        the motion thread carries the new masks (or forgets removed objects)."""
        if op in PROMPT_OPS:
            frames = {result["frame"]} | ({st.tracker.latest_frame} if st.tracker.latest_frame is not None else set())
            for n in sorted(frames):
                info = st.infos.get(n)
                if info is not None:
                    self.publisher.publish_revision(st.name, info, st.tracker.result(n), st.dropped, st.tags)
        if st.motion is not None and op in STATE_OPS | {"import_state"}:
            newest = st.tracker.result() if st.tracker.window else FrameResult(-1, {})
            if op in PROMPT_OPS:
                info = st.infos.get(newest.frame_index)
                st.seed(newest, info.capture_ns if info is not None else None)
            else:
                st.keep_only(newest)

    def _found(self, st: Stream, frame: int | None, added: bool) -> None:
        """A detector's answer changed a stream's objects: as a prompt on `frame` does when it added some, as a
        removal otherwise."""
        self.changed(st, "add_mask" if added else "remove_object", {"frame": frame})

    def _retracked(self) -> int:
        return sum(st.stats.retracked_frames for st in self.streams.values())
