"""The concepts' detector process (tracker/daemon/detecting.py) kept alive: a real omdet-turbo child (random weights)
that dies is reported once and started again, one that leaves a call unanswered past its deadline is killed and
started again, calls go on with the new one; and a daemon whose start fails after its detector started leaves no
detector process behind. Every wait is bounded."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

from pipelines.errors import SourceSpecError
from tracker.client.spawn import free_port
from tracker.daemon.config import load_config
from tracker.daemon.detecting import DetectDone, DetectJob, DetectorSettings, DetectorWorker
from tracker.daemon.wiring import build_daemon

pytestmark = pytest.mark.slow  # a detector of 115 M parameters started two or three times: seconds each

WAIT_S = 300.0  # bound of every wait for the detector (its process starts, a call takes seconds on a busy CPU)
IMAGE = np.zeros((120, 160, 3), np.uint8)


def _answer(worker: DetectorWorker, frame: int) -> DetectDone:
    """A call on `frame` offered and its answer waited for (bounded)."""
    worker.offer(DetectJob("s", frame, IMAGE, ("ball",), 1.0))
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        done = worker.take()
        if done:
            (answer,) = done
            return answer
        time.sleep(0.1)
    raise AssertionError(f"no answer for frame {frame} within {WAIT_S:.0f} s: {worker.health()}")


def _until(worker: DetectorWorker, check) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check(worker.health()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert check(worker.health()), worker.health()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_killed_child_is_reported_once_and_started_again(caplog):
    worker = DetectorWorker(DetectorSettings("omdet-turbo", idle_priority=False))
    try:
        first = worker.health()
        assert first.alive and first.restarts == 0 and first.last_error is None and first.pid is not None
        os.kill(first.pid, signal.SIGKILL)  # while no call runs: the feeding thread notices on its own
        with caplog.at_level(logging.INFO, logger="tracker.daemon.detecting"):
            _until(worker, lambda h: not h.alive)
            down = worker.health()
            assert down.pid is None and down.last_error == "its process was killed by SIGKILL" and down.hung == 0
            _until(worker, lambda h: h.alive)
        again = worker.health()
        assert again.restarts == 1 and again.pid not in (None, first.pid) and _gone(first.pid)
        assert again.last_error == down.last_error  # kept: how the last one ended
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "SIGKILL" in errors[0] and "starting it again in 1 s" in errors[0]
        answer = _answer(worker, 1)
        assert answer.frame == 1 and answer.error is None
    finally:
        worker.close()


def test_a_call_unanswered_past_its_deadline_kills_and_restarts_the_child():
    # The deadline is max(1 s, 4x the median answered call): about 16 s after one call of 4 s here, instead of the
    # daemon's 30 s floor and 20x.
    worker = DetectorWorker(DetectorSettings("omdet-turbo", idle_priority=False, hang_min_s=1.0, hang_factor=4.0))
    try:
        assert _answer(worker, 0).error is None  # one answered call: the deadline follows it
        stuck = worker.health().pid
        os.kill(stuck, signal.SIGSTOP)  # alive, and never answers
        t0 = time.monotonic()
        worker.offer(DetectJob("s", 1, IMAGE, ("ball",), 1.0))
        _until(worker, lambda h: h.hung == 1)
        hung = worker.health()
        assert time.monotonic() - t0 >= 1.0 and "no answer within" in hung.last_error
        _until(worker, lambda h: h.alive)
        assert worker.health().restarts == 1 and worker.health().pid != stuck and _gone(stuck)
        answer = _answer(worker, 2)  # the call in flight is lost; the next one is answered
        assert answer.frame == 2 and answer.error is None and worker.take() == []
    finally:
        worker.close()


def test_a_start_that_fails_after_the_detector_started_stops_it():
    cfg = load_config(None, {"stream.source": "scene:nope", "detector.model": "omdet-turbo", "model.image_size": 64,
                             "model.threads": 1, "metrics.enabled": False, "state.enabled": False,
                             "endpoints.results": f"tcp://127.0.0.1:{free_port()}",  # not the default ports: another
                             "endpoints.commands": f"tcp://127.0.0.1:{free_port()}"})  # daemon may hold them
    try:
        with pytest.raises(SourceSpecError, match="unknown scene 'nope'"):  # the stream's source, after the detector
            build_daemon(cfg)
        assert multiprocessing.active_children() == []
        assert [t.name for t in threading.enumerate() if t.name == "detector"] == []
    finally:
        for child in multiprocessing.active_children():  # without the fix: not left to the next tests
            child.kill()
