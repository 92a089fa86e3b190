"""Live sources that survive failures: reconnection with bounded exponential backoff while the
caller keeps reading (and gets None) instead of crashing."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .base import Source, StreamInfo
from .errors import EndOfStream, SourceError
from .frame import Frame
from .spec import SourceSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnection attempts: initial_s, times factor after each failure, at most max_s."""

    initial_s: float = 0.5  # first retry soon: most RTSP/camera hiccups are short
    factor: float = 2.0  # doubling spares a server that is restarting
    max_s: float = 10.0  # never wait longer than this between attempts (a service outlives its camera: no cap)

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))


DEFAULT_BACKOFF = Backoff()
# A live source without a frame this long is restarted: several frames' worth even at a few fps, short
# enough that a frozen camera is noticed well before systemd's watchdog.
DEFAULT_STALL_TIMEOUT_S = 5.0
# At stop, how long a reconnection attempt or the teardown of a failed source may take to finish (a camera's
# start or stop can take seconds; GStreamer must not be left starting a pipeline as the process exits).
JOIN_TIMEOUT_S = 5.0


class ReconnectingSource:
    """Wraps a source factory; on error, end of stream or a stall it restarts the source with backoff.

    `read()` never raises for a failure it will retry and never waits for a reconnection or a teardown
    (attempts and the stop of a failed source run on threads of their own): it returns None, so the caller's
    loop (a daemon's other streams, its command handling) keeps running. Frame indices count the frames that
    arrived (a gap: frames dropped for newer ones) and continue across reconnects. With fail_fast=False a source
    that cannot start at first is retried like one that failed later, instead of raising (`last_error` says
    why).
    """

    def __init__(self, factory: Callable[[], Source], spec: SourceSpec, backoff: Backoff = DEFAULT_BACKOFF,
                 stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S, fail_fast: bool = True):
        self._factory = factory
        self.spec = spec
        self.backoff = backoff
        self.stall_timeout_s = stall_timeout_s  # no frame for this long on a live source: reconnect
        self.reconnects = 0  # successful restarts after a failure
        self.failures = 0  # consecutive failed attempts (0 while healthy)
        self.last_error: str | None = None
        self._source: Source | None = None
        self._dropped_before = 0
        self._next_index = 0  # one past the last delivered frame's index
        self._offset = 0  # the index of the current source's first frame: numbering goes on across reconnects
        self._retry_at = 0.0
        self._last_frame_at = time.monotonic()
        self.fail_fast = fail_fast
        self._attempt: threading.Thread | None = None  # a reconnection attempt in flight
        self._teardown: threading.Thread | None = None  # a failed source being stopped
        self._attempt_result: Source | SourceError | None = None
        self._stopped = False  # set by stop(): an attempt in flight must not leave a started source behind
        self._started = False  # a source has started once (later starts are reconnections)
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._source is not None

    @property
    def info(self) -> StreamInfo | None:
        return self._source.info if self._source is not None else None

    @property
    def dropped(self) -> int:
        return self._dropped_before + (self._source.dropped if self._source is not None else 0)

    def start(self) -> StreamInfo | None:
        """Start the first source; one that cannot start raises (a service fails fast). With fail_fast off the
        first start already runs in the background (a dead camera's start can take seconds, and a daemon's other
        streams must not wait for it): None is returned and `read()` picks the source up once it started."""
        if not self.fail_fast:
            self._retry_at = 0.0
            self._try_reconnect()
            return None
        source = self._factory()
        info = source.start()
        self._started = True
        self._source = source
        self._last_frame_at = time.monotonic()
        return info

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._source is None and not self._try_reconnect():
            if self._attempt is not None:
                self._attempt.join(timeout)
            else:
                time.sleep(min(timeout, max(0.0, self._retry_at - time.monotonic())))
            return None
        try:
            frame = self._source.read(timeout)
        except (SourceError, EndOfStream) as e:
            self._fail(f"{type(e).__name__}: {e}")
            return None
        now = time.monotonic()
        if frame is None:
            if now - self._last_frame_at > self.stall_timeout_s:
                self._fail(f"no frame for {self.stall_timeout_s:.1f} s")
            return None
        self._last_frame_at = now
        frame = dataclasses.replace(frame, index=self._offset + frame.index)  # gaps: frames the queue dropped
        self._next_index = frame.index + 1
        return frame

    def stop(self) -> None:
        if self._source is not None:
            self._source.stop()
            self._source = None
        with self._lock:  # an attempt in flight stops what it starts from now on; one that finished is stopped here
            self._stopped = True
            attempt, self._attempt = self._attempt, None
        for thread in (attempt, self._teardown):
            if thread is not None:
                thread.join(JOIN_TIMEOUT_S)
                if thread.is_alive():
                    log.warning("live source: %s still running after %.0f s at stop", thread.name, JOIN_TIMEOUT_S)
        with self._lock:
            started, self._attempt_result = self._attempt_result, None
        if started is not None and not isinstance(started, SourceError):
            started.stop()

    def _fail(self, why: str) -> None:
        self.last_error = why
        log.warning("live source failed (%s); reconnecting", why)
        self._dropped_before += self._source.dropped
        failed, self._source = self._source, None
        self._teardown = threading.Thread(target=failed.stop, name="source-teardown", daemon=True)
        self._teardown.start()  # a pipeline's stop can take seconds: never on the caller's loop
        self.failures += 1
        self._retry_at = time.monotonic() + self.backoff.delay(self.failures)

    def _try_reconnect(self) -> bool:
        """Collects a finished attempt, or starts one when its time has come; True once reconnected."""
        if self._attempt is not None:
            if self._attempt.is_alive():
                return False
            self._attempt = None
            with self._lock:
                result, self._attempt_result = self._attempt_result, None
            first = not self._started  # the first start, in the background (fail_fast off)
            if result is None or isinstance(result, SourceError):
                result = result or SourceError("the reconnection attempt ended without a source")
                self.last_error = str(result)
                self.failures += 1
                self._retry_at = time.monotonic() + self.backoff.delay(self.failures)
                if first and self.failures == 1:
                    log.warning("source %s cannot start (%s); retrying in the background",
                                self.spec.location or self.spec.kind, result)
                else:  # failures counts the failure that started the reconnecting too: attempts are one fewer
                    log.warning("reconnect attempt %d failed: %s (next in %.1f s)", self.failures - 1, result,
                                self.backoff.delay(self.failures))
                return False
            if first and self.failures == 0:
                log.info("source %s started", self.spec.location or self.spec.kind)
            else:
                log.info("live source reconnected after %d attempt(s)", self.failures)
                self.reconnects += 1
            self._started = True
            self._source = result
            self._offset = self._next_index
            self.failures = 0
            self._last_frame_at = time.monotonic()
            return True
        if time.monotonic() < self._retry_at:
            return False
        with self._lock:
            self._stopped = False
        self._attempt = threading.Thread(target=self._attempt_start, name="reconnect", daemon=True)
        self._attempt.start()
        return False

    def _attempt_start(self) -> None:
        """One reconnection attempt (its own thread: a camera's start can take seconds), once the failed
        source is stopped (a camera cannot be opened twice)."""
        if self._teardown is not None:
            self._teardown.join(JOIN_TIMEOUT_S)
            if self._teardown.is_alive():
                self._attempt_result = SourceError(f"the failed source is still stopping after {JOIN_TIMEOUT_S:.0f} "
                                                   "s: not opened again yet")
                return
        try:
            source = self._factory()
            source.start()
        except Exception as e:  # noqa: BLE001  (whatever the start raised is this attempt's failure)
            self._attempt_result = e if isinstance(e, SourceError) else SourceError(f"{type(e).__name__}: {e}")
            return
        with self._lock:
            if not self._stopped:
                self._attempt_result = source
                return
        source.stop()  # stop() came while this attempt was starting
