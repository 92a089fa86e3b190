"""The daemon: source -> tracker -> publisher in one process, with commands served between frames."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

import zmq

from .commands import CommandHandler
from .publisher import PUB_HWM, Publisher
from .stats import Stats
from .tracker import Tracker

log = logging.getLogger(__name__)

COMMANDS_PER_TURN = 32  # requests served between two frames at most: prompts never starve tracking
FRAME_WAIT_S = 0.02  # how long one turn waits for a frame: bounds command latency while idle
MAX_INBOUND_BYTES = 64 << 20  # larger messages are dropped by ZeroMQ itself (memory safety net)


@dataclass(frozen=True)
class Endpoints:
    """Where the daemon listens. Loopback by default: nothing is exposed unless asked."""

    results: str = "tcp://127.0.0.1:5555"  # PUB: results and previews
    commands: str = "tcp://127.0.0.1:5556"  # ROUTER: requests and replies


class Daemon:
    """Runs until stop() (or SIGINT/SIGTERM when installed via `install_signal_handlers`)."""

    def __init__(self, source, tracker: Tracker, stream: str = "default", endpoints: Endpoints = Endpoints(),
                 mask_encoding: str = "rle", preview_every: int = 0):
        self.source, self.tracker, self.stream = source, tracker, stream
        self.endpoints = endpoints
        self.stats = Stats()
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, PUB_HWM)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._cmd = self._ctx.socket(zmq.ROUTER)
        self._cmd.setsockopt(zmq.LINGER, 0)
        self._cmd.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES)
        self.publisher = Publisher(self._pub, stream, mask_encoding, preview_every)
        self.handler = CommandHandler(tracker, self.stats, self.status)

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
        }

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Bind, start the source (raising if it cannot start), then loop until stopped."""
        try:
            self._pub.bind(self.endpoints.results)
            self._cmd.bind(self.endpoints.commands)
            self.source.start()
            log.info("serving stream %r: results on %s, commands on %s", self.stream,
                     self.endpoints.results, self.endpoints.commands)
            while not self._stop.is_set():
                self._serve_commands()
                frame = self.source.read(FRAME_WAIT_S)
                if frame is not None and not self._stop.is_set():
                    self._track(frame)
        finally:
            self.close()

    def close(self) -> None:
        self.source.stop()
        self._pub.close(0)
        self._cmd.close(0)
        self._ctx.term()

    def _track(self, frame) -> None:
        t_start = time.monotonic_ns()
        try:
            result = self.tracker.step(frame.image)
        except Exception:
            self.stats.frame_errors += 1
            log.exception("tracking failed on source frame %d; frame skipped", frame.index)
            return
        t_tracked = time.monotonic_ns()
        stages = {"queue": (t_start - frame.capture_ns) / 1e6, **result.times.as_ms()}
        stages["step"] = (t_tracked - t_start) / 1e6
        self.publisher.publish(frame, result, stages, self.source.dropped)
        stages["publish"] = (time.monotonic_ns() - t_tracked) / 1e6
        self.stats.record_frame(stages)

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
