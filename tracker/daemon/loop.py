"""The daemon's loop: source -> tracker -> publisher in one process, with commands served between frames,
systemd notifications, Prometheus metrics and optional CurveZMQ security."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from pipelines.base import Source
from pipelines.errors import EndOfStream
from pipelines.frame import Frame

from ..core.results import FrameResult
from ..core.tracker import Tracker
from ..protocol import messages
from ..protocol.curve import CurveServer
from ..runner.recording import RECORDED_OPS
from .commands import CommandHandler
from .metrics import Metrics
from .publisher import PUB_HWM, Publisher
from .recorder import Recorder
from .sdnotify import Notifier
from .security import bind
from .stats import Stats

log = logging.getLogger(__name__)

COMMANDS_PER_TURN = 32  # requests served between two frames at most: prompts never starve tracking
# Frames re-tracked for prompts on past frames, between two frames at most: each such prompt re-tracks
# up to a feature window, so a burst is spread over several frames instead of stalling the stream.
RETRACK_FRAMES_PER_TURN = 16
FRAME_WAIT_S = 0.02  # how long one turn waits for a frame: bounds command latency while idle
MAX_INBOUND_BYTES = 64 << 20  # larger messages are dropped by ZeroMQ itself (memory safety net)
END_LINGER_MS = 1000  # at the end of a stream, how long the "end" message may take to leave before exit


class Interrupted(BaseException):
    """Raised by the signal handler inside a tracking step or a request, so a stop never waits for one.
    A BaseException: the per-frame and per-request error handling must not swallow it."""


@dataclass(frozen=True)
class DaemonSettings:
    """Everything the daemon needs besides its source and tracker (built from the config by wiring.py)."""

    stream: str
    results: str  # PUB: results and previews
    commands: str  # ROUTER: requests and replies
    mask_encoding: str
    preview_every: int
    publish_queue: int  # results waiting for the publisher thread; 0: publish on the tracking thread
    metrics_address: str | None  # None: no metrics endpoint
    metrics_port: int
    curve: CurveServer | None
    watchdog_stall_s: float  # no frame for this long: stop systemd watchdog pings
    status_every_s: float


class Daemon:
    """Runs until stop() (or SIGINT/SIGTERM once `install_signal_handlers` was called)."""

    def __init__(self, source: Source, tracker: Tracker, settings: DaemonSettings, notifier: Notifier | None = None,
                 recorder: Recorder | None = None,
                 on_result: Callable[[Frame, FrameResult], None] | None = None):
        """recorder: keeps what the daemon sees and does (serve --record); on_result: called after each
        tracked frame (replay's verification)."""
        self.source, self.tracker, self.settings = source, tracker, settings
        self.recorder, self._on_result = recorder, on_result
        self.stream = settings.stream
        self.stats = Stats()
        self.metrics = Metrics(settings.stream)
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
        self.publisher = Publisher(self._pub, settings.stream, settings.mask_encoding, settings.preview_every,
                                   settings.publish_queue, self._published)
        self.handler = CommandHandler(tracker, self.stats, self.status, self.metrics,
                                      lambda: self.publisher.dropped)
        self._last_frame = 0.0
        self._last_ping = 0.0
        self._last_status = 0.0
        self._ready = False
        self._ended = False  # an end message was published

    def _socket(self, kind: int) -> zmq.Socket:
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if self.settings.curve:
            self.settings.curve.apply(s)
        return s

    def status(self) -> messages.DaemonStatus:
        src, info = self.source, self.source.info
        window = self.tracker.window
        return messages.DaemonStatus(
            stream=self.stream, frame=self.tracker.latest_frame,
            source=messages.SourceStatus(
                kind=src.spec.kind, live=src.spec.live, width=info.width if info else None,
                height=info.height if info else None, fps=info.fps if info else None, dropped=src.dropped,
                reconnects=src.reconnects, connected=src.connected),
            uptime_s=time.monotonic() - self.stats.started, window=window[:1] + window[-1:],
            metrics_port=self.metrics_port, precision=self.tracker.precision)

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
        """Bind, start the source (raising if it cannot start at all), then loop until stopped."""
        s = self.settings
        try:
            bind(self._pub, s.results, curve=s.curve is not None)
            bind(self._cmd, s.commands, curve=s.curve is not None)
            if s.metrics_address is not None:
                self.metrics_port = self.metrics.serve(s.metrics_address, s.metrics_port)
                log.info("metrics on http://%s:%d/metrics", s.metrics_address, self.metrics_port)
            self.source.start()
            log.info("serving stream %r: results on %s, commands on %s", self.stream, s.results, s.commands)
            while not self._stop.is_set():
                self._serve_commands()
                try:
                    frame = self.source.read(FRAME_WAIT_S)
                except EndOfStream:
                    self._end("end of stream")
                    return
                if frame is not None and not self._stop.is_set():
                    self._track(frame)
                self._systemd()
        except Interrupted as e:
            log.info("%s: stopped in the middle of a tracking step or request", e)
        finally:
            self._busy = False
            self.notifier.stopping()
            self.close()

    def _end(self, reason: str) -> None:
        log.info("%s after %d frames; exiting", reason, self.stats.frames)
        self.publisher.publish_end(self.tracker.latest_frame, reason)
        self._ended = True

    def close(self) -> None:
        self.source.stop()
        self.publisher.close()  # its thread is done with the socket after this
        if self.recorder is not None:
            self.recorder.close()
        if self._ended:  # the end message may take a moment to leave
            self._pub.setsockopt(zmq.LINGER, END_LINGER_MS)
        self._pub.close()
        self._cmd.close(0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()
        self.metrics.close()
        self.notifier.close()

    def _track(self, frame: Frame) -> None:
        t_start = time.monotonic_ns()
        try:
            self._busy = True
            result = self.tracker.step(frame.image)
        except Exception:
            self.stats.frame_errors += 1
            self.metrics.frame_errors.labels(self.stream).inc()
            log.exception("tracking failed on source frame %d; frame skipped", frame.index)
            return
        finally:
            self._busy = False
        stages = {"queue": (t_start - frame.capture_ns) / 1e6, **result.times.as_ms()}
        stages["step"] = (time.monotonic_ns() - t_start) / 1e6
        self.publisher.publish(frame, result, stages, self.source.dropped)
        if self.recorder is not None:
            self.recorder.frame(frame, result.frame_index)
            self.recorder.result(result)
        if self._on_result is not None:
            self._on_result(frame, result)
        self.stats.record_frame(stages)
        self.metrics.observe_frame(stages)
        self._last_frame = time.monotonic()

    def _published(self, capture_ns: int, publish_ms: float) -> None:
        """A result left the socket (called in the publisher's thread)."""
        self.stats.record_stages({"publish": publish_ms})
        self.metrics.observe_published(publish_ms, (time.monotonic_ns() - capture_ns) / 1e9)

    def _systemd(self) -> None:
        """READY after the first tracked frame, STATUS periodically, WATCHDOG only while frames flow."""
        now = time.monotonic()
        m = self.metrics
        m.sync_source(self.source.dropped, self.source.reconnects)
        if self.recorder is not None:
            m.sync_record_lost(self.recorder.lost)
        m.objects.labels(self.stream).set(len(self.tracker.objects))
        if not self._ready and self.stats.frames > 0:
            self._ready = True
            self.notifier.ready(self._status_line())
        if not self._ready:
            return
        if now - self._last_status >= self.settings.status_every_s:
            self._last_status = now
            m.bank_bytes.labels(self.stream).set(self.tracker.held_bytes())
            self.notifier.status(self._status_line())
        interval = self.notifier.watchdog_interval_s
        flowing = now - self._last_frame < self.settings.watchdog_stall_s
        if interval is not None and flowing and now - self._last_ping >= interval:
            self._last_ping = now
            self.notifier.watchdog()

    def _status_line(self) -> str:
        return (f"{self.stats.fps:.1f} fps, {len(self.tracker.objects)} objects, frame {self.tracker.latest_frame}, "
                f"source {'ok' if self.source.connected else 'reconnecting'}")

    def _serve_commands(self) -> None:
        """Requests waiting on the command socket, until none is left, COMMANDS_PER_TURN were served or
        their re-tracking reached RETRACK_FRAMES_PER_TURN frames; the rest wait for the next turn."""
        retracked_before = self.stats.retracked_frames
        for _ in range(COMMANDS_PER_TURN):
            if self.stats.retracked_frames - retracked_before >= RETRACK_FRAMES_PER_TURN:
                return
            try:
                msg = self._cmd.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, parts = msg[0], msg[1:]
            envelope = []
            if parts and parts[0] == b"":  # a REQ client's delimiter (a DEALER's lone empty frame reads so too)
                envelope, parts = [b""], parts[1:]
            latest = self.tracker.latest_frame
            try:
                self._busy = True
                done = self.handler.handle(parts)
            finally:
                self._busy = False
            if self.recorder is not None and done.result is not None and done.op in RECORDED_OPS:
                self.recorder.command(latest, done.op, done.args, done.frames[0] if done.frames else None,
                                      done.result)
            try:
                self._cmd.send_multipart([identity, *envelope, done.reply], flags=zmq.NOBLOCK)
            except zmq.ZMQError as e:  # the client went away; nothing to answer
                log.debug("reply not sent: %s", e)
