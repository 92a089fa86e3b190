"""The concepts' detector, off the tracking thread: a child process that loads the detector and runs it on one
frame at a time, fed by a thread of the daemon from a one-frame slot per stream (the newest frame offered wins),
its answers collected for the tracking thread to apply between frames. A child that dies, or leaves a call
unanswered past its deadline, is reported and replaced with backoff by that thread. Nothing here ever waits on the
tracking thread, and the tracking thread never waits on it."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..concepts.types import Detection
from ..errors import SamtrackError

log = logging.getLogger(__name__)

# How long the child may take to import transformers and build the detector (random weights: the real
# architecture's initialisation; a few seconds to a minute on a slow CPU) before the daemon gives up at start.
READY_TIMEOUT_S = 300.0
POLL_S = 0.2  # how often the feeding thread looks whether it must stop, or the child died, while it waits
STOP_TIMEOUT_S = 3.0  # at shutdown, how long the child may take to leave before it is killed
# Answers waiting for the tracking thread (it takes them every turn): beyond this the oldest is dropped, counted per
# stream (`take_lost`, then stats' detector.dropped). 8 calls are tens of seconds of a CPU's detector: an older
# answer is about a frame the stream has long left.
RESULTS_KEPT = 8
# A child that died is started again after RESTART_FIRST_S, the wait doubling after each start that fails or child
# that dies again before answering a call, up to RESTART_MAX_S. A one-off death (killed, out of memory on one big
# frame) is back within a second and its load time; one that repeats (a broken download, a device gone) costs a
# process start (seconds of CPU, hundreds of MB) at most once a minute instead of in a loop beside tracking.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
# A call unanswered after max(HANG_MIN_S, HANG_FACTOR x the median of the last CALLS_TIMED calls) means a hung child
# (a native library deadlocked, a device stuck): it is killed and replaced as a dead one. The floor is above the
# slowest call measured here (7.5 to 10 s for omdet-turbo beside tracking at idle priority, docs/design.md); the
# factor leaves a slower detector or a busier machine its own margin. Lower catches a hang sooner but may kill a call
# that was only starved of CPU. Until a call has answered (the first warms the model up), READY_TIMEOUT_S.
HANG_MIN_S = 30.0
HANG_FACTOR = 20.0
CALLS_TIMED = 25  # answered calls whose median sets the hang bound


class DetectorStartError(SamtrackError):
    """The detector could not start (unknown name, missing extra, a device it cannot use, a failed build)."""

    code = "bad_detector"


@dataclass(frozen=True)
class DetectJob:
    """One detector call asked for: a stream's model frame (its number and picture) and the texts of its concepts
    due now, keeping detections scoring `threshold` or more."""

    stream: str
    frame: int
    image: np.ndarray  # HxWx3 uint8 RGB
    texts: tuple[str, ...]
    threshold: float


@dataclass(frozen=True)
class DetectDone:
    """One detector call's answer for the frame it was asked on."""

    stream: str
    frame: int
    texts: tuple[str, ...]
    size: tuple[int, int]  # the frame's (height, width)
    detections: tuple[Detection, ...]
    ms: float  # the call's wall time in the child
    error: str | None = None  # the call failed (nothing detected)


@dataclass(frozen=True)
class DetectorSettings:
    """Which detector, where, and how much of the machine its process may take."""

    name: str
    device: str = "cpu"
    threads: int = 1  # torch threads in the child
    idle_priority: bool = True  # SCHED_IDLE: the child runs only on CPU time the tracker leaves
    hang_min_s: float = HANG_MIN_S  # a call's deadline is max(hang_min_s, hang_factor x the median call)
    hang_factor: float = HANG_FACTOR


@dataclass(frozen=True)
class DetectorHealth:
    """The detector's process, as stats and metrics report it."""

    name: str  # the detector
    alive: bool  # a process is ready for calls (False from a death or hang until a new one is ready)
    pid: int | None  # that process, while alive
    restarts: int  # processes started again after one died or hung
    hung: int  # calls that got no answer within their deadline (their process killed)
    last_error: str | None  # how the last process ended, or why the last start again failed; None before any


def jobs(conn):
    """The jobs a child receives, until None (leave) or the parent's end of the pipe closed."""
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        yield job


def _child(conn, settings: DetectorSettings) -> None:
    """The child process: the detector built, then one job at a time until None (or the pipe closes)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s detector: %(message)s")
    # The parent stops it (a None, or a kill): a Ctrl-C or a service manager's SIGTERM to the whole group must not
    # end it with a traceback or make the parent report a dead detector while it stops anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if settings.idle_priority:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    try:
        import torch

        from ..models.detectors import load_detector

        torch.set_num_threads(settings.threads)
        detector = load_detector(settings.name, settings.device)
    except Exception as e:  # noqa: BLE001  (said to the parent, which fails at start with it)
        conn.send(f"{type(e).__name__}: {e}")
        return
    conn.send(None)
    for job in jobs(conn):
        t0 = time.perf_counter()
        try:
            found, error = tuple(detector.detect(job.image, list(job.texts), job.threshold)), None
        except Exception as e:  # noqa: BLE001  (a failed call is answered; the next one may work)
            found, error = (), f"{type(e).__name__}: {e}"
        conn.send(DetectDone(job.stream, job.frame, job.texts, job.image.shape[:2], found,
                             1000.0 * (time.perf_counter() - t0), error))


@dataclass(frozen=True)
class _Lost:
    """A child that cannot answer any more: how it ended, and whether it was killed for a hung call."""

    why: str
    hung: bool = False


class _Child:
    """One detector process, ready (built) once constructed, and the parent's end of its pipe."""

    def __init__(self, settings: DetectorSettings, ready_timeout_s: float, stopping: Callable[[], bool]):
        """DetectorStartError when the detector cannot be built, is not within ready_timeout_s, or `stopping()`
        became true meanwhile; the process is then gone."""
        ctx = multiprocessing.get_context("spawn")  # never fork a process holding torch's and ZeroMQ's threads
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child, args=(child, settings), name=f"detector-{settings.name}",
                                daemon=True)
        self.proc.start()
        child.close()
        try:
            problem = self._ready(ready_timeout_s, stopping)
        except BaseException:  # an interrupt while it loads: no process is left behind
            self.kill()
            raise
        if problem is not None:
            self.kill()
            raise DetectorStartError(f"detector {settings.name!r} cannot start: {problem}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def _ready(self, timeout_s: float, stopping: Callable[[], bool]) -> str | None:
        deadline = time.monotonic() + timeout_s
        while not self.conn.poll(POLL_S):
            if stopping():
                return "the daemon is stopping"
            if time.monotonic() > deadline:
                return f"not ready within {timeout_s:.0f} s"
        try:
            return self.conn.recv()
        except EOFError:
            return f"its process {self.ended()}"

    def ended(self) -> str:
        """How the process ended, in words (it is waited for a moment: its pipe closes before it is reaped)."""
        self.proc.join(STOP_TIMEOUT_S)
        code = self.proc.exitcode
        if code is None:
            return "still runs"
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def stop(self) -> None:
        """Asked to leave, then killed if it has not within STOP_TIMEOUT_S."""
        if self.proc.is_alive():
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
            self.proc.join(STOP_TIMEOUT_S)
        self.kill()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(STOP_TIMEOUT_S)
        self.conn.close()


class DetectorWorker:
    """The detector's child process and the thread feeding it (and replacing the child when it dies or hangs).
    `offer`, `take` and `health` never block."""

    def __init__(self, settings: DetectorSettings, ready_timeout_s: float = READY_TIMEOUT_S):
        """Returns once the child is ready: DetectorStartError when it cannot be."""
        self.settings = settings
        self.name = settings.name
        self.ready_timeout_s = ready_timeout_s
        self._child = _Child(settings, ready_timeout_s, lambda: False)
        self.dropped = 0  # offers replaced by a newer frame of their stream before the child took them
        self._alive = True
        self._restarts = self._hung = 0
        self._last_error: str | None = None
        self._backoff = RESTART_FIRST_S  # the wait before the next start again
        self._times: deque[float] = deque(maxlen=CALLS_TIMED)  # answered calls' wall times (s), for the deadline
        self._slots: dict[str, DetectJob] = {}  # per stream, the newest frame offered and not yet sent
        self._done: deque[DetectDone] = deque()
        self._lost: Counter[str] = Counter()  # per stream, answers dropped (RESULTS_KEPT waited) since take_lost
        self._cond = threading.Condition()
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._feed, name="detector", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A call is running or waiting."""
        with self._cond:
            return self._busy or bool(self._slots)

    def health(self) -> DetectorHealth:
        with self._cond:
            return DetectorHealth(self.name, self._alive, self._child.pid if self._alive else None, self._restarts,
                                  self._hung, self._last_error)

    def offer(self, job: DetectJob) -> None:
        """The next call for this stream: replaces the one it offered before if the child has not taken it (while
        the child is being replaced too: the new one starts with the newest frames)."""
        with self._cond:
            if self._stopped:
                return
            if self._slots.pop(job.stream, None) is not None:
                self.dropped += 1
            self._slots[job.stream] = job  # at the end: streams take turns
            self._cond.notify()

    def take(self) -> list[DetectDone]:
        """The answers that came since the last take, oldest first."""
        with self._cond:
            out = list(self._done)
            self._done.clear()
            return out

    def take_lost(self) -> dict[str, int]:
        """Per stream, the answers dropped unapplied since the last call: RESULTS_KEPT newer ones waited for `take`."""
        with self._cond:
            out = dict(self._lost)
            self._lost.clear()
            return out

    def close(self) -> None:
        """The thread and the child stopped (the child killed if it does not leave in STOP_TIMEOUT_S)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
            busy, child = self._busy, self._child
        if busy:  # a call in flight holds no state worth waiting seconds for
            child.kill()
        self._thread.join(STOP_TIMEOUT_S)
        with self._cond:
            child = self._child  # a replacement started meanwhile is the thread's to kill if it still runs
        child.stop()

    def _feed(self) -> None:
        while True:
            with self._cond:
                if not self._slots and not self._stopped:
                    self._cond.wait(POLL_S)
                if self._stopped:
                    return
                job = self._slots.pop(next(iter(self._slots))) if self._slots else None
                self._busy = job is not None
            outcome = None
            try:
                outcome = self._call(job) if job is not None else self._check()
            finally:
                with self._cond:  # not busy once its answer waits to be taken (or was counted as dropped)
                    self._busy = False
                    if isinstance(outcome, DetectDone):
                        self._done.append(outcome)
                        while len(self._done) > RESULTS_KEPT:
                            self._lost[self._done.popleft().stream] += 1
            if isinstance(outcome, _Lost) and not self._replace(outcome):
                return

    def _check(self) -> _Lost | None:
        """While no call runs: whether the child died."""
        return None if self._child.proc.is_alive() else _Lost(f"its process {self._child.ended()}")

    def _deadline_s(self) -> float:
        if not self._times:
            return self.ready_timeout_s
        return max(self.settings.hang_min_s, self.settings.hang_factor * statistics.median(self._times))

    def _call(self, job: DetectJob) -> DetectDone | _Lost | None:
        """One job through the child: its answer, how the child was lost, or None once stopping."""
        deadline, t0 = self._deadline_s(), time.monotonic()
        conn = self._child.conn
        try:
            conn.send(job)
            while not conn.poll(POLL_S):
                if self._stopped:
                    return None
                if not self._child.proc.is_alive():
                    raise EOFError
                if time.monotonic() - t0 > deadline:
                    return _Lost(f"a call got no answer within {deadline:.0f} s: hung, killed", hung=True)
            done = conn.recv()
        except (EOFError, OSError):
            return None if self._stopped else _Lost(f"its process {self._child.ended()}")
        self._times.append(time.monotonic() - t0)
        self._backoff = RESTART_FIRST_S  # it answered: a later death starts the backoff over
        return done

    def _replace(self, lost: _Lost) -> bool:
        """The lost child killed, reported (stats, the log) and started again with backoff until one is ready;
        False once stopping."""
        self._child.kill()
        with self._cond:
            self._alive, self._last_error = False, lost.why
            self._hung += lost.hung
        log.error("detector %s (pid %s): %s; starting it again in %.0f s (concepts stay, tracking goes on)",
                  self.name, self._child.pid, lost.why, self._backoff)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopped, self._backoff)
                if self._stopped:
                    return False
            self._backoff = min(2 * self._backoff, RESTART_MAX_S)
            try:
                child = _Child(self.settings, self.ready_timeout_s, lambda: self._stopped)
            except DetectorStartError as e:
                if self._stopped:
                    return False
                with self._cond:
                    self._last_error = f"starting it again failed: {e}"
                log.error("detector %s: %s; next try in %.0f s", self.name, self._last_error, self._backoff)
                continue
            with self._cond:
                if self._stopped:  # close() has taken the old child; this one is not its to stop
                    child.kill()
                    return False
                self._child, self._alive = child, True
                self._restarts += 1
            log.info("detector %s: started again (pid %s, restart %d)", self.name, child.pid, self._restarts)
            return True
