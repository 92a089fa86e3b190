"""The concepts' detector, off the tracking thread: a child process that loads the detector and runs it on one
frame at a time, fed by a thread of the daemon from a one-frame slot per stream (the newest frame offered wins),
its answers collected for the tracking thread to apply between frames. Nothing here ever waits on the tracking
thread, and the tracking thread never waits on it."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from ..concepts.types import Detection
from ..errors import SamtrackError

log = logging.getLogger(__name__)

# How long the child may take to import transformers and build the detector (random weights: the real
# architecture's initialisation; a few seconds to a minute on a slow CPU) before the daemon gives up at start.
READY_TIMEOUT_S = 300.0
POLL_S = 0.2  # how often the feeding thread looks whether it must stop while the child computes
STOP_TIMEOUT_S = 3.0  # at shutdown, how long the child may take to leave before it is killed
# Answers waiting for the tracking thread (it takes them every turn): beyond this the oldest is dropped, counted per
# stream (`take_lost`, then stats' detector.dropped). 8 calls are tens of seconds of a CPU's detector: an older
# answer is about a frame the stream has long left.
RESULTS_KEPT = 8


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
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        t0 = time.perf_counter()
        try:
            found, error = tuple(detector.detect(job.image, list(job.texts), job.threshold)), None
        except Exception as e:  # noqa: BLE001  (a failed call is answered; the next one may work)
            found, error = (), f"{type(e).__name__}: {e}"
        conn.send(DetectDone(job.stream, job.frame, job.texts, job.image.shape[:2], found,
                             1000.0 * (time.perf_counter() - t0), error))


class DetectorWorker:
    """The detector's child process and the thread feeding it. `offer` and `take` never block."""

    def __init__(self, settings: DetectorSettings, ready_timeout_s: float = READY_TIMEOUT_S):
        self.settings = settings
        self.name = settings.name
        ctx = multiprocessing.get_context("spawn")  # never fork a process holding torch's and ZeroMQ's threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, settings), name=f"detector-{settings.name}",
                                 daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(ready_timeout_s):
            self._kill()
            raise DetectorStartError(f"detector {settings.name} did not start within {ready_timeout_s:.0f} s")
        try:
            problem = self._conn.recv()
        except EOFError:
            problem = f"its process exited with code {self._proc.exitcode}"
        if problem is not None:
            self._kill()
            raise DetectorStartError(f"detector {settings.name!r} cannot start: {problem}")
        self.error: str | None = None  # why the child is gone (it died); None while it runs
        self.dropped = 0  # offers replaced by a newer frame of their stream before the child took them
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

    def offer(self, job: DetectJob) -> None:
        """The next call for this stream: replaces the one it offered before if the child has not taken it."""
        with self._cond:
            if self.error is not None or self._stopped:
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
        if self._busy:  # a call in flight holds no state worth waiting seconds for
            self._kill()
        self._thread.join(STOP_TIMEOUT_S)
        if self._proc.is_alive():
            try:
                self._conn.send(None)
            except (OSError, ValueError):
                pass
            self._proc.join(STOP_TIMEOUT_S)
        self._kill()

    def _kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(STOP_TIMEOUT_S)
        self._conn.close()

    def _feed(self) -> None:
        while True:
            with self._cond:
                while not self._slots and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                job = self._slots.pop(next(iter(self._slots)))
                self._busy = True
            done = None
            try:
                done = self._call(job)
            finally:
                with self._cond:  # not busy once its answer waits to be taken (or was counted as dropped)
                    self._busy = False
                    if done is not None:
                        self._done.append(done)
                        while len(self._done) > RESULTS_KEPT:
                            self._lost[self._done.popleft().stream] += 1
            if done is None:
                return

    def _call(self, job: DetectJob) -> DetectDone | None:
        """One job through the child; None once stopping or the child died (error said)."""
        try:
            self._conn.send(job)
            while not self._conn.poll(POLL_S):
                if self._stopped:
                    return None
                if not self._proc.is_alive():
                    raise EOFError(f"exit code {self._proc.exitcode}")
            return self._conn.recv()
        except (EOFError, OSError) as e:
            if self._stopped:  # the daemon is stopping: the child was told to, or killed
                return None
            with self._cond:
                self.error = f"the detector's process ended ({e}); restart the daemon"
                self._slots.clear()
            log.error("detector %s: %s", self.name, self.error)
            return None
