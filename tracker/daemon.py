"""The daemon: source -> tracker -> publisher in one process, with commands served between frames,
systemd notifications, Prometheus metrics and optional CurveZMQ security."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

import zmq

from pipelines.errors import EndOfStream

from .commands import CommandHandler
from .metrics import Metrics
from .publisher import PUB_HWM, Publisher
from .sdnotify import Notifier
from .security import CurveServer, bind
from .stats import Stats
from .tracker import Tracker

log = logging.getLogger(__name__)

COMMANDS_PER_TURN = 32  # requests served between two frames at most: prompts never starve tracking
FRAME_WAIT_S = 0.02  # how long one turn waits for a frame: bounds command latency while idle
MAX_INBOUND_BYTES = 64 << 20  # larger messages are dropped by ZeroMQ itself (memory safety net)
END_LINGER_MS = 1000  # at the end of a stream, how long the "end" message may take to leave before exit


@dataclass(frozen=True)
class DaemonSettings:
    """Everything the daemon needs besides its source and tracker (from the config file and flags)."""

    stream: str = "default"
    results: str = "tcp://127.0.0.1:5555"  # PUB: results and previews
    commands: str = "tcp://127.0.0.1:5556"  # ROUTER: requests and replies
    mask_encoding: str = "rle"
    preview_every: int = 0
    metrics_address: str | None = None  # None: no metrics endpoint
    metrics_port: int = 9105
    curve: CurveServer | None = None
    watchdog_stall_s: float = 10.0  # no frame for this long: stop systemd watchdog pings
    status_every_s: float = 5.0


class Daemon:
    """Runs until stop() (or SIGINT/SIGTERM once `install_signal_handlers` was called)."""

    def __init__(self, source, tracker: Tracker, settings: DaemonSettings = DaemonSettings(),
                 notifier: Notifier | None = None):
        self.source, self.tracker, self.settings = source, tracker, settings
        self.stream = settings.stream
        self.stats = Stats()
        self.metrics = Metrics(settings.stream)
        self.notifier = notifier or Notifier()
        self.metrics_port: int | None = None
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._auth = settings.curve.start(self._ctx) if settings.curve else None
        self._pub = self._socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, PUB_HWM)
        self._cmd = self._socket(zmq.ROUTER)
        self._cmd.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES)
        self.publisher = Publisher(self._pub, settings.stream, settings.mask_encoding, settings.preview_every)
        self.handler = CommandHandler(tracker, self.stats, self.status, self.metrics)
        self._last_frame = 0.0
        self._last_ping = 0.0
        self._last_status = 0.0
        self._ready = False

    def _socket(self, kind: int) -> zmq.Socket:
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if self.settings.curve:
            self.settings.curve.apply(s)
        return s

    def status(self) -> dict:
        info = getattr(self.source, "info", None)
        return {
            "stream": self.stream, "frame": self.tracker.latest_frame,
            "source": {"kind": self.source.spec.kind, "live": self.source.spec.live,
                       "width": info.width if info else None, "height": info.height if info else None,
                       "fps": info.fps if info else None, "dropped": self.source.dropped,
                       "reconnects": getattr(self.source, "reconnects", 0),
                       "connected": getattr(self.source, "connected", True)},
            "uptime_s": round(time.monotonic() - self.stats.started, 3),
            "window": self.tracker.window[:1] + self.tracker.window[-1:],
            "metrics_port": self.metrics_port,
        }

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())

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
        finally:
            self.notifier.stopping()
            self.close()

    def _end(self, reason: str) -> None:
        log.info("%s after %d frames; exiting", reason, self.stats.frames)
        self.publisher.publish_end(self.tracker.latest_frame, reason)
        self._pub.setsockopt(zmq.LINGER, END_LINGER_MS)

    def close(self) -> None:
        self.source.stop()
        self._pub.close()  # LINGER option: 0, or END_LINGER_MS after an end message
        self._cmd.close(0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()
        self.metrics.close()
        self.notifier.close()

    def _track(self, frame) -> None:
        t_start = time.monotonic_ns()
        try:
            result = self.tracker.step(frame.image)
        except Exception:
            self.stats.frame_errors += 1
            self.metrics.frame_errors.labels(self.stream).inc()
            log.exception("tracking failed on source frame %d; frame skipped", frame.index)
            return
        t_tracked = time.monotonic_ns()
        stages = {"queue": (t_start - frame.capture_ns) / 1e6, **result.times.as_ms()}
        stages["step"] = (t_tracked - t_start) / 1e6
        self.publisher.publish(frame, result, stages, self.source.dropped)
        t_published = time.monotonic_ns()
        stages["publish"] = (t_published - t_tracked) / 1e6
        self.stats.record_frame(stages)
        self.metrics.observe_frame(stages, (t_published - frame.capture_ns) / 1e9)
        self._last_frame = time.monotonic()

    def _systemd(self) -> None:
        """READY after the first tracked frame, STATUS periodically, WATCHDOG only while frames flow."""
        now = time.monotonic()
        m = self.metrics
        m.sync_source(self.source.dropped, getattr(self.source, "reconnects", 0))
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
        connected = getattr(self.source, "connected", True)
        return (f"{self.stats.fps:.1f} fps, {len(self.tracker.objects)} objects, frame {self.tracker.latest_frame}, "
                f"source {'ok' if connected else 'reconnecting'}")

    def _serve_commands(self) -> None:
        for _ in range(COMMANDS_PER_TURN):
            try:
                msg = self._cmd.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, parts = msg[0], msg[1:]
            envelope = []
            if parts and parts[0] == b"":  # a REQ client's delimiter
                envelope, parts = [b""], parts[1:]
            reply = self.handler.handle(parts)
            try:
                self._cmd.send_multipart([identity, *envelope, reply], flags=zmq.NOBLOCK)
            except zmq.ZMQError as e:  # the client went away; nothing to answer
                log.debug("reply not sent: %s", e)
