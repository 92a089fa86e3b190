"""The daemon's loop: source -> tracker -> publisher for each of its streams in one process, with commands
served between frames, systemd notifications, Prometheus metrics and optional CurveZMQ security."""

from __future__ import annotations

import logging
import signal
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
from ..runner.recording import RECORDED_OPS
from .commands import CommandHandler
from .metrics import Metrics
from .publisher import PUB_HWM, Publisher
from .sdnotify import Notifier
from .security import bind
from .stream import Stream

log = logging.getLogger(__name__)

COMMANDS_PER_TURN = 32  # requests served between two turns at most: prompts never starve tracking
# Frames re-tracked for prompts on past frames, between two turns at most: each such prompt re-tracks
# up to a feature window, so a burst is spread over several frames instead of stalling the streams.
RETRACK_FRAMES_PER_TURN = 16
FRAME_WAIT_S = 0.02  # how long a turn without frames waits: bounds command latency while idle
# With several streams no one source can be waited on: each is polled, and a turn that found no frame
# sleeps this long (a frame waits at most this much longer).
POLL_S = 0.005
MAX_INBOUND_BYTES = 64 << 20  # larger messages are dropped by ZeroMQ itself (memory safety net)
END_LINGER_MS = 1000  # at the end of the streams, how long the "end" messages may take to leave before exit


class Interrupted(BaseException):
    """Raised by the signal handler inside a tracking step or a request, so a stop never waits for one.
    A BaseException: the per-frame and per-request error handling must not swallow it."""


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


class Daemon:
    """Runs until stop() (or SIGINT/SIGTERM once `install_signal_handlers` was called), or until every
    stream's source has ended."""

    def __init__(self, streams: list[Stream], settings: DaemonSettings, notifier: Notifier | None = None,
                 on_result: Callable[[Frame, FrameResult], None] | None = None):
        """on_result: called after each tracked frame (replay's verification)."""
        if not streams or len({s.name for s in streams}) != len(streams):
            raise ValueError(f"a daemon needs streams with distinct names, got {[s.name for s in streams]}")
        self.streams = {s.name: s for s in streams}
        self.settings = settings
        self._on_result = on_result
        self.metrics = Metrics()
        self.notifier = notifier or Notifier()
        self.metrics_port: int | None = None
        self._stop = threading.Event()
        self._busy = False  # inside a tracking step or a request: a signal interrupts it
        self._ctx = zmq.Context()
        self._auth = settings.curve.start(self._ctx) if settings.curve else None
        self._pub = self._socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, PUB_HWM)
        self._cmd = self._socket(zmq.ROUTER)
        self._cmd.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES)
        self.publisher = Publisher(self._pub, settings.mask_encoding, settings.publish_queue, self._published)
        for st in streams:
            self.publisher.add_stream(st.name, st.preview_every)
        self.handler = CommandHandler(self.streams, self.status, self.metrics, self.publisher.dropped)
        self._turns = 0
        self._last_ping = 0.0
        self._last_status = 0.0
        self._ready = False
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
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        self.stop()
        if self._busy:
            raise Interrupted(signal.Signals(signum).name)

    def stop(self) -> None:
        self._stop.set()

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
            while not self._stop.is_set():
                self._serve_commands()
                if not self._turn():
                    log.info("no stream left running; exiting")
                    return
                self._systemd()
        except Interrupted as e:
            log.info("%s: stopped in the middle of a tracking step or request", e)
        finally:
            self._busy = False
            self.notifier.stopping()
            self.close()

    def _start_sources(self) -> None:
        """Each stream's source; one that cannot start is reported and the others run. With one stream
        (or none able to start) the error is raised: a service fails fast."""
        errors = []
        for st in self.streams.values():
            try:
                st.source.start()
                self.metrics.source_up.labels(st.name).set(1)
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
        batch: list[tuple[Stream, Frame]] = []
        tracked = False
        for st in running[k:] + running[:k]:
            try:
                frame = st.source.read(wait)
            except EndOfStream:
                self._end(st, "end of stream")
                continue
            if frame is None or self._stop.is_set():
                continue
            tracked = True
            if self.settings.batch_streams:
                batch.append((st, frame))
            else:
                self._track(st, frame)
        if len(batch) == 1:
            self._track(*batch[0])
        elif batch:
            self._track_batch(batch)
        if not tracked and len(running) > 1:
            self._stop.wait(POLL_S)
        return True

    def _end(self, st: Stream, reason: str) -> None:
        log.info("stream %r: %s after %d frames", st.name, reason, st.stats.frames)
        self.publisher.publish_end(st.name, st.tracker.latest_frame, reason)
        st.ended = True
        self._ended = True

    def close(self) -> None:
        for st in self.streams.values():
            st.source.stop()
        self.publisher.close()  # its thread is done with the socket after this
        for st in self.streams.values():
            if st.recorder is not None:
                st.recorder.close()
        if self._ended:  # the end messages may take a moment to leave
            self._pub.setsockopt(zmq.LINGER, END_LINGER_MS)
        self._pub.close()
        self._cmd.close(0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()
        self.metrics.close()
        self.notifier.close()

    def _track(self, st: Stream, frame: Frame) -> None:
        t_start = time.monotonic_ns()
        try:
            self._busy = True
            result = st.tracker.step(frame.image)
        except Exception:
            self._failed(st, frame)
            return
        finally:
            self._busy = False
        self._tracked(st, frame, result, t_start)

    def _track_batch(self, batch: list[tuple[Stream, Frame]]) -> None:
        """Frames of several streams, their image encoding in one batch (batch_streams)."""
        t_start = time.monotonic_ns()
        try:
            self._busy = True
            results = step_batch([st.tracker for st, _ in batch], [frame.image for _, frame in batch])
        except Exception:
            for st, frame in batch:
                self._failed(st, frame)
            return
        finally:
            self._busy = False
        for (st, frame), result in zip(batch, results, strict=True):
            self._tracked(st, frame, result, t_start)

    def _failed(self, st: Stream, frame: Frame) -> None:
        st.stats.frame_errors += 1
        self.metrics.frame_errors.labels(st.name).inc()
        log.exception("stream %r: tracking failed on source frame %d; frame skipped", st.name, frame.index)

    def _tracked(self, st: Stream, frame: Frame, result: FrameResult, t_start: int) -> None:
        """A tracked frame published, recorded and counted."""
        stages = {"queue": (t_start - frame.capture_ns) / 1e6, **result.times.as_ms()}
        stages["step"] = (time.monotonic_ns() - t_start) / 1e6
        self.publisher.publish(st.name, frame, result, stages, st.source.dropped)
        if st.recorder is not None:
            st.recorder.frame(frame, result.frame_index)
            st.recorder.result(result)
        if self._on_result is not None:
            self._on_result(frame, result)
        st.stats.record_frame(stages)
        self.metrics.observe_frame(st.name, stages)
        st.last_frame = time.monotonic()

    def _published(self, stream: str, capture_ns: int, publish_ms: float) -> None:
        """A result left the socket (called in the publisher's thread)."""
        self.streams[stream].stats.record_stages({"publish": publish_ms})
        self.metrics.observe_published(stream, publish_ms, (time.monotonic_ns() - capture_ns) / 1e9)

    def _systemd(self) -> None:
        """READY after the first tracked frame, STATUS periodically, WATCHDOG while frames flow on at least
        one stream; metrics that are kept as totals elsewhere."""
        now = time.monotonic()
        m = self.metrics
        for st in self.streams.values():
            if st.error is not None:
                continue
            m.sync_source(st.name, st.source.dropped, st.source.reconnects)
            m.source_up.labels(st.name).set(1 if st.source.connected and not st.ended else 0)
            if st.recorder is not None:
                m.sync_recorder(st.name, st.recorder.lost, st.recorder.errors)
            m.objects.labels(st.name).set(len(st.tracker.objects))
        if not self._ready and any(st.stats.frames for st in self.streams.values()):
            self._ready = True
            self.notifier.ready(self._status_line())
        if not self._ready:
            return
        if now - self._last_status >= self.settings.status_every_s:
            self._last_status = now
            for st in self.streams.values():
                m.bank_bytes.labels(st.name).set(st.tracker.held_bytes())
            self.notifier.status(self._status_line())
        interval = self.notifier.watchdog_interval_s
        flowing = any(now - st.last_frame < self.settings.watchdog_stall_s for st in self.streams.values())
        if interval is not None and flowing and now - self._last_ping >= interval:
            self._last_ping = now
            self.notifier.watchdog()

    def _status_line(self) -> str:
        if len(self.streams) == 1:
            st = self.stream
            return (f"{st.stats.fps:.1f} fps, {len(st.tracker.objects)} objects, frame {st.tracker.latest_frame}, "
                    f"source {'ok' if st.source.connected else 'reconnecting'}")
        return "; ".join(st.summary() for st in self.streams.values())

    def _serve_commands(self) -> None:
        """Requests waiting on the command socket, until none is left, COMMANDS_PER_TURN were served or
        their re-tracking reached RETRACK_FRAMES_PER_TURN frames; the rest wait for the next turn."""
        retracked_before = self._retracked()
        for _ in range(COMMANDS_PER_TURN):
            if self._retracked() - retracked_before >= RETRACK_FRAMES_PER_TURN:
                return
            try:
                msg = self._cmd.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, parts = msg[0], msg[1:]
            envelope = []
            if parts and parts[0] == b"":  # a REQ client's delimiter (a DEALER's lone empty frame reads so too)
                envelope, parts = [b""], parts[1:]
            latest = {name: st.tracker.latest_frame for name, st in self.streams.items()}
            try:
                self._busy = True
                done = self.handler.handle(parts)
            finally:
                self._busy = False
            st = done.stream
            if st is not None and st.recorder is not None and done.result is not None and done.op in RECORDED_OPS:
                st.recorder.command(latest[st.name], done.op, done.args, done.frames[0] if done.frames else None,
                                    done.result)
            try:
                self._cmd.send_multipart([identity, *envelope, done.reply], flags=zmq.NOBLOCK)
            except zmq.ZMQError as e:  # the client went away; nothing to answer
                log.debug("reply not sent: %s", e)

    def _retracked(self) -> int:
        return sum(st.stats.retracked_frames for st in self.streams.values())
