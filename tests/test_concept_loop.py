"""The concepts' part of the daemon's turn (tracker/daemon/concept_loop.py) and the detector's worker
(tracker/daemon/detecting.py): detector answers that wait beyond what they keep are dropped oldest first and counted
per stream (stats' detector.dropped, samtrack_detector_dropped), never silently; every answer handed over is either
applied or counted. A real worker with a child process that answers without a detector; real trackers, concepts,
publisher (a PUB socket on loopback) and metrics."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from tests import fake_detector
from tests.test_concept_apply import BoxMasks, done, stepped
from tracker.client.spawn import free_port
from tracker.concepts.types import ConceptSpec
from tracker.daemon import detecting
from tracker.daemon.concept_loop import ConceptLoop
from tracker.daemon.concepting import StreamConcepts
from tracker.daemon.detecting import RESULTS_KEPT, DetectJob, DetectorHealth, DetectorSettings, DetectorWorker
from tracker.daemon.metrics import Metrics
from tracker.daemon.publisher import Publisher
from tracker.daemon.stream import Stream
from tracker.protocol import messages

HEALTH = DetectorHealth("omdet-turbo", True, 1, 0, 0, None)  # the detector's process, as stats report it


@pytest.fixture(scope="module")
def model():
    from tests.conftest import make_model

    return make_model(image_size=64)


class Answers:
    """The worker's side as the loop sees it: the answers of a detector and those it dropped, handed over once."""

    def __init__(self, answers, lost: dict[str, int]):
        self.answers, self.lost = list(answers), dict(lost)

    def take(self):
        out, self.answers = self.answers, []
        return out

    def take_lost(self) -> dict[str, int]:
        out, self.lost = self.lost, {}
        return out

    def close(self) -> None:
        pass


def test_answers_waiting_beyond_those_kept_are_dropped_and_counted(model):
    """One answer finds objects, so its stream prompts them over the next turns; the answers behind it wait. Of
    RESULTS_KEPT + 2 answers, RESULTS_KEPT wait and the oldest beyond them is dropped, counted with the worker's own
    drops; the ones kept are applied once the objects are in."""
    t = stepped(model)
    BoxMasks(t)
    concepts = StreamConcepts("s", t, "omdet-turbo")
    concepts.add(ConceptSpec("cup", stream="s"))
    from pipelines.open import open_source

    st = Stream("s", open_source("test:"), t, concepts=concepts)
    frame = t.window[1]
    boxes = [(8 * k, 40, 8 * k + 6, 60) for k in range(6)]  # six objects: prompted over several turns
    answers = [done(frame, *boxes)] + [done(frame) for _ in range(RESULTS_KEPT + 1)]
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"tcp://127.0.0.1:{free_port()}")
    metrics, publisher = Metrics(), Publisher(pub, "rle", queue_size=0)
    publisher.add_stream("s")
    loop = ConceptLoop(Answers(answers, {"s": 2}), publisher, metrics, lambda st, frame, added: None)
    try:
        loop.turn({"s": st})
        assert st.concepts.adding and concepts.calls == 1  # the first applied; the others wait behind its objects
        assert concepts.dropped == 1 + 2
        for _ in range(20):  # bounded: a few objects a turn, then the answers kept
            if not st.concepts.adding and concepts.calls == 1 + RESULTS_KEPT:
                break
            loop.turn({"s": st})
    finally:
        pub.close(0)
        ctx.term()
    assert concepts.calls == 1 + RESULTS_KEPT and concepts.dropped == 3  # every answer applied or counted
    assert messages.detector_result(concepts.detector_stats(HEALTH))["dropped"] == 3
    assert metrics.registry.get_sample_value("samtrack_detector_dropped_total", {"stream": "s"}) == 3


def test_the_workers_answers_beyond_those_kept_are_dropped_and_counted(monkeypatch):
    """Answers the tracking thread has not taken: beyond RESULTS_KEPT the oldest go, counted per stream, said once."""
    monkeypatch.setattr(detecting, "_child", fake_detector.child)  # the child's target: spawn imports it by name
    worker = DetectorWorker(DetectorSettings("none", idle_priority=False), ready_timeout_s=120)
    try:
        image = np.zeros((8, 8, 3), np.uint8)
        streams = [f"s{k}" for k in range(RESULTS_KEPT + 3)]
        for k, name in enumerate(streams):  # a slot per stream: none replaced, all answered in turn
            worker.offer(DetectJob(name, k, image, ("cup",), 0.3))
        deadline = time.monotonic() + 60
        while worker.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not worker.busy and worker.health().alive
        taken = worker.take()
        assert [d.stream for d in taken] == streams[3:]
        assert worker.take_lost() == {name: 1 for name in streams[:3]} and worker.take_lost() == {}
    finally:
        worker.close()
