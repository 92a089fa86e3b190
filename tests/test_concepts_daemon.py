"""Concept prompts end to end: a real daemon with `--detector omdet-turbo` (random weights, the real config) on the
test source, over real ZeroMQ: add_concept with threshold 0 answered by labelled objects in results and events on
events.<stream>, list_concepts, a click on a found object, the documented errors, tracking going on while the
detector runs, a restart keeping concepts and labels, remove_concept removing its objects. Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import zmq

from tests.daemon_helpers import present_checkpoint, scrape_metrics, start_daemon
from tracker.client import Client, RemoteError, Result, Subscriber

pytestmark = pytest.mark.slow  # a detector of 115 M parameters on a 2-core CPU: seconds a call

# 5 fps and a window of 64 model frames: a frame stays promptable for about 13 s, longer than a detector call here.
SOURCE = "test:?width=160&height=120&fps=5"
WAIT_S = 300.0  # bound of every wait for the detector (its process starts, then a call takes seconds to a minute)
TEXT = "ball"


def _daemon(state, weights, *extra):
    return start_daemon("--detector", "omdet-turbo", "--state", str(state), "--feature-window", "64",
                        "--checkpoint", str(weights), *extra, source=SOURCE, wait_s=WAIT_S)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One daemon for the checks in order (the restart check replaces it); its state directory and weights."""
    tmp = tmp_path_factory.mktemp("concepts")
    w = {"state": tmp / "state", "weights": present_checkpoint(tmp / "present.pt")}  # masks not empty
    w["daemon"] = _daemon(w["state"], w["weights"])
    yield w
    assert w["daemon"].stop() == 0


class Events:
    """A SUB socket on `events` (every stream's events, by ZeroMQ's prefix match)."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"events")
        self.sub.connect(endpoint)
        self.seen: list[tuple[bytes, dict]] = []

    def poll(self) -> None:
        while self.sub.poll(0):
            topic, header = self.sub.recv_multipart()
            self.seen.append((topic, json.loads(header)))

    def close(self) -> None:
        self.sub.close(0)
        self.ctx.term()


def _labelled(r: Result) -> list[dict]:
    return [o for o in r.header["objects"] if o["label"] == TEXT]


def test_add_concept_finds_labelled_objects_while_tracking_goes_on(world):
    d = world["daemon"]
    events = Events(d.results)
    try:
        with Client(d.commands, timeout=60) as c, Subscriber(d.results, "test") as sub:
            reply = c.add_concept(TEXT, threshold=0)
            assert reply == {"concept": {"text": TEXT, "every": None, "every_s": 1.0, "threshold": 0.0,
                                         "max_objects": 16, "stream": "test"}}
            results, found, deadline = 0, None, time.monotonic() + WAIT_S
            while found is None and time.monotonic() < deadline:
                r = sub.recv(5.0)
                events.poll()
                if isinstance(r, Result):
                    results += 1
                    found = _labelled(r) or None
            assert found, f"no object labelled {TEXT!r} within {WAIT_S:.0f} s ({results} results)"
            assert all(o["status"] in ("tentative", "confirmed") and isinstance(o["detection_score"], float)
                       for o in found)
            for _ in range(50):  # bounded: the appeared events left with the objects' first results
                events.poll()
                if any(h["kind"] == "appeared" for _, h in events.seen):
                    break
                time.sleep(0.1)
            appeared = [h for t, h in events.seen if h["kind"] == "appeared"]
            assert appeared and all(t == b"events.test" for t, _ in events.seen)
            assert {o["id"] for o in found} <= {h["object"] for h in appeared}
            assert all(set(h) == {"v", "type", "seq", "kind", "stream", "frame", "object", "label", "score"}
                       and h["label"] == TEXT and h["stream"] == "test" for h in appeared)
            # Tracking went on while the detector ran: frames were answered after the call's frame before its
            # answer was applied, and results kept coming between add_concept and the first labelled one.
            stats = c.stats()
            det = stats["detector"]
            assert det["name"] == "omdet-turbo" and det["calls"] >= 1 and det["lag_frames"]["max"] >= 2
            assert results >= 3
            world["found"] = sorted(o["id"] for o in found)
    finally:
        events.close()


def test_list_concepts_and_objects_carry_the_label(world):
    with Client(world["daemon"].commands, timeout=60) as c:
        (concept,) = c.list_concepts()["concepts"]
        assert {k: concept[k] for k in ("text", "every", "every_s", "threshold", "max_objects", "stream")} == \
            {"text": TEXT, "every": None, "every_s": 1.0, "threshold": 0.0, "max_objects": 16, "stream": "test"}
        assert concept["calls"] >= 1 and concept["detector_ms_p50"] > 0
        objects = {o["id"]: o for o in c.list_objects()["objects"]}
        for obj_id in concept["objects"]:
            assert objects[obj_id]["label"] == TEXT and objects[obj_id]["status"] in ("tentative", "confirmed", "lost")


def test_a_click_on_a_found_object_corrects_it(world):
    with Client(world["daemon"].commands, timeout=60) as c:
        found = [o for o in c.list_objects()["objects"] if o["label"] == TEXT]
        assert found, "the concept lost its objects before the click"
        reply = c.add_points(found[0]["id"], [[80, 60]], [1])
        assert reply["object"]["id"] == found[0]["id"] and reply["object"]["label"] == TEXT
        clicked = c.add_points(900, [[20, 20]], [1])  # a clicked object: no label
        assert clicked["object"]["label"] is None and clicked["object"]["status"] is None
        c.remove_object(900)


@pytest.mark.parametrize(("op", "args", "code"), [
    ("add_concept", {"text": ""}, "bad_request"),
    ("add_concept", {"text": "cup", "every": 3, "every_s": 1.0}, "bad_request"),
    ("add_concept", {"text": "cup", "threshold": 2}, "bad_request"),
    ("add_concept", {"text": "cup", "stream": "nope"}, "unknown_stream"),
    ("remove_concept", {"text": "never added"}, "unknown_concept"),
])
def test_bad_concept_requests(world, op, args, code):
    with Client(world["daemon"].commands, timeout=60) as c, pytest.raises(RemoteError) as e:
        c.request(op, args)
    assert e.value.code == code


def test_a_restart_keeps_concepts_and_labels(world):
    d = world["daemon"]
    with Client(d.commands, timeout=60) as c:
        before = {o["id"] for o in c.list_objects()["objects"] if o["label"] == TEXT}
    assert before
    assert d.stop() == 0
    world["daemon"] = again = _daemon(world["state"], world["weights"])
    with Client(again.commands, timeout=60) as c:
        assert [k["text"] for k in c.list_concepts()["concepts"]] == [TEXT]
        restored = set(c.ping()["state"]["restored"]["objects"])
        labels = {o["id"]: o["label"] for o in c.list_objects()["objects"]}
        # (an object found just before the stop may have been retracted by a last answer: some, not all)
        assert restored & before and all(labels[i] == TEXT for i in restored & before)
        deadline = time.monotonic() + WAIT_S
        while c.stats()["detector"]["calls"] == 0 and time.monotonic() < deadline:  # it keeps detecting
            time.sleep(1.0)
        assert c.stats()["detector"]["calls"] >= 1


def test_a_killed_detector_is_reported_and_started_again_while_its_concepts_stay(world):
    """The detector's process SIGKILLed: stats and metrics say it is down and how it ended, the daemon starts it
    again, and its concept's calls go on with the new process."""
    d = world["daemon"]
    with Client(d.commands, timeout=60) as c:
        stats = c.stats()
        det, port, up = stats["detector"], stats["metrics_port"], 'samtrack_detector_up{detector="omdet-turbo"}'
        assert det["alive"] and det["restarts"] == 0 and det["hung"] == 0 and det["last_error"] is None
        assert det["pid"] in {p.pid for p in psutil.Process(d.proc.pid).children()}  # the daemon's own child
        assert scrape_metrics(port)[up] == 1
        os.kill(det["pid"], signal.SIGKILL)
        seen_down, seen_up, deadline = [], set(), time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            now = c.stats()["detector"]
            seen_up.add(scrape_metrics(port)[up])
            if not now["alive"]:
                seen_down.append(now)
            elif now["restarts"] == 1 and 0 in seen_up:
                break
            time.sleep(0.2)
        assert seen_down and seen_down[0]["pid"] is None and "killed by SIGKILL" in seen_down[0]["last_error"]
        assert now["alive"] and now["restarts"] == 1 and now["pid"] not in (None, det["pid"]) and seen_up == {0, 1}
        metrics = scrape_metrics(port)
        assert metrics[up] == 1 and metrics['samtrack_detector_restarts_total{detector="omdet-turbo"}'] == 1
        assert [k["text"] for k in c.list_concepts()["concepts"]] == [TEXT]  # concepts stay
        calls, deadline = now["calls"], time.monotonic() + WAIT_S
        while c.stats()["detector"]["calls"] == calls and time.monotonic() < deadline:  # the new process answers
            time.sleep(1.0)
        assert c.stats()["detector"]["calls"] > calls


def test_remove_concept_removes_its_objects_with_events(world):
    d = world["daemon"]
    events = Events(d.results)
    try:
        time.sleep(0.5)  # the subscription reaches the daemon before the events it waits for
        with Client(d.commands, timeout=60) as c:
            ids = {o["id"] for o in c.list_objects()["objects"] if o["label"] == TEXT}
            assert c.remove_concept(TEXT) == {"concepts": []}
            assert ids.isdisjoint(o["id"] for o in c.list_objects()["objects"])
            removed: set[int] = set()
            for _ in range(100):  # bounded: published on the next turn
                events.poll()
                removed = {h["object"] for _, h in events.seen if h["kind"] == "removed" and h["label"] == TEXT}
                if removed >= ids:
                    break
                time.sleep(0.1)
            assert removed >= ids
    finally:
        events.close()


def test_no_detector_configured():
    d = start_daemon()
    try:
        with Client(d.commands, timeout=60) as c:
            with pytest.raises(RemoteError) as e:
                c.add_concept(TEXT)
            assert c.stats()["detector"] is None and c.list_concepts() == {"concepts": []}
        assert e.value.code == "no_detector" and "--detector NAME" in e.value.message
    finally:
        assert d.stop() == 0


def test_an_unknown_detector_fails_at_start():
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "serve", "--source", SOURCE, "--detector", "nope",
                        "--no-metrics"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown detector 'nope'" in r.stderr


def test_a_detector_that_cannot_load_fails_at_start_with_one_line_and_no_process_left(tmp_path):
    """grounding-dino-tiny without its download (an empty cache) cannot build its tokenizer: the daemon ends its
    start with one clear line and exit code 2, and no process of its is left (each carries the test's mark)."""
    mark = f"samtrack-test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "SAMTRACK_TEST_MARK": mark}
    env.pop("SAMTRACK_CACHE_DIR", None)
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "serve", "--source", SOURCE, "--image-size", "64",
                        "--threads", "1", "--detector", "grounding-dino-tiny", "--no-metrics"],
                       capture_output=True, text=True, timeout=WAIT_S, env=env)
    errors = [line for line in r.stderr.splitlines() if line.startswith("samtrack: error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr[-2000:]
    assert "detector 'grounding-dino-tiny' cannot start: CheckpointError" in errors[0]
    assert "Traceback" not in r.stderr
    left = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("SAMTRACK_TEST_MARK") == mark:
                left.append(p)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    assert left == []
