"""Concept prompts in `samtrack view`: the requests it relays (checked and rate-limited before the daemon sees them),
labels and the tentative style on the page, lifecycle events in its log. A real viewer process on loopback, fed by
a publisher of this test's own (synthetic results and events) or by a real daemon with a detector; Chromium through
Playwright."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time

import numpy as np
import pytest
import zmq

from tests.test_viewer import WAIT_MS
from tests.viewer_helpers import ViewerProcess, chromium
from tracker import protocol as P
from tracker.client.spawn import free_port
from tracker.viewer.concepts import ADD_BURST, ADD_REFILL_S, AddRate, check_concept_args, event_message

W, H = 160, 120


def test_concept_requests_are_checked_before_the_daemon():
    check_concept_args("add_concept", {"text": "forklift", "threshold": 0.0, "every_s": 1.0, "stream": "cam"})
    check_concept_args("remove_concept", {"text": "forklift"})
    check_concept_args("list_concepts", {})
    bad = [("add_concept", {"text": "x" * (P.MAX_CONCEPT_TEXT + 1)}), ("add_concept", {"text": "  "}),
           ("add_concept", {"text": "a", "threshold": 2}), ("add_concept", {"text": "a", "every": 0}),
           ("add_concept", {"text": "a", "max_objects": 10**9}), ("add_concept", {"text": "a", "script": 1}),
           ("add_concept", {"text": "a", "stream": "../etc"}), ("remove_concept", {"text": ["a"]}),
           ("remove_concept", {"text": "x" * (P.MAX_CONCEPT_TEXT + 1)}), ("list_concepts", {"text": "a"})]
    for op, args in bad:
        with pytest.raises(ValueError):
            check_concept_args(op, args)


def test_the_pages_concept_field_takes_what_the_daemon_takes():
    """The page's text field holds a concept's text (a static page cannot read the limit: its copy is checked)."""
    import re
    from pathlib import Path

    import tracker.viewer

    page = (Path(tracker.viewer.__file__).parent / "static" / "viewer.html").read_text()
    assert re.findall(r'id="concept-text" maxlength="(\d+)"', page) == [str(P.MAX_CONCEPT_TEXT)]


def test_adding_concepts_is_rate_limited():
    now = [0.0]
    rate = AddRate(clock=lambda: now[0])
    assert [rate.take() for _ in range(ADD_BURST + 1)] == [True] * ADD_BURST + [False]
    assert rate.wait_s() == pytest.approx(ADD_REFILL_S)
    now[0] += ADD_REFILL_S
    assert rate.take() and not rate.take()


def test_events_are_reduced_to_their_known_fields():
    e = event_message(json.dumps({"kind": "appeared", "stream": "test", "frame": 7, "object": 3, "label": "x" * 999,
                                  "score": 0.5, "extra": "<script>"}).encode())
    assert e == {"type": "event", "kind": "appeared", "stream": "test", "frame": 7, "object": 3,
                 "label": "x" * P.MAX_CONCEPT_TEXT, "score": 0.5}
    for body in (b"[]", b'{"kind": "exploded", "stream": "t", "frame": 1, "object": 1}',
                 b'{"kind": "lost", "stream": "../t", "frame": 1, "object": 1}',
                 b'{"kind": "lost", "stream": "t", "frame": "1", "object": 1}'):
        with pytest.raises(ValueError):
            event_message(body)


def _ws_replies(port: int, requests: list[dict]) -> list[dict]:
    """The viewer's replies to these requests, sent at once over one WebSocket, by request id."""
    import aiohttp

    async def session() -> list[dict]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            for r in requests:
                await ws.send_str(json.dumps(r))
            replies = {}
            async with asyncio.timeout(60):
                while len(replies) < len(requests):
                    msg = await ws.receive()
                    if msg.type == aiohttp.WSMsgType.TEXT and "id" in (m := json.loads(msg.data)):
                        replies[m["id"]] = m
            return [replies[r["id"]] for r in requests]

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's sync API may hold this thread's loop
        return pool.submit(asyncio.run, session()).result(timeout=90)


def test_the_viewer_refuses_bad_concepts_and_bursts_of_them():
    """Against no daemon at all: what the viewer accepts goes on (and finds the daemon unreachable), what it refuses
    never leaves it."""
    v = ViewerProcess("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", token=None)
    try:
        bad = [{"id": 1, "op": "add_concept", "args": {"text": "x" * (P.MAX_CONCEPT_TEXT + 1)}},
               {"id": 2, "op": "add_concept", "args": {"text": "a", "eval": "1"}},
               {"id": 3, "op": "remove_concept", "args": {"text": 5}},
               {"id": 4, "op": "add_concept", "args": ["text"]}]
        burst = [{"id": 10 + i, "op": "add_concept", "args": {"text": f"thing {i}"}} for i in range(ADD_BURST + 2)]
        replies = _ws_replies(v.port, bad + burst + [{"id": 99, "op": "list_concepts"}])
        codes = [r["error"]["code"] for r in replies]
        assert codes[:4] == ["bad_request"] * 4
        assert "64" in replies[0]["error"]["message"]  # says what the limit is
        # replies come as the daemon (unreachable here) answers: count, not order
        assert sorted(codes[4:4 + ADD_BURST + 2]) == sorted(["unreachable"] * ADD_BURST + ["too_many_requests"] * 2)
        assert codes[-1] == "unreachable"  # listing is not rate-limited
    finally:
        assert v.stop() == 0


def _result(frame: int, objects: list[dict], masks: list[np.ndarray]) -> list[bytes]:
    now = time.time_ns()
    header = {"v": 1, "type": "result", "stream": "test", "seq": frame, "frame": frame, "source_index": frame,
              "width": W, "height": H, "capture_us": now // 1000, "publish_us": now // 1000,
              "publish_unix_us": now // 1000, "dropped": 0, "objects": objects, "source": "model",
              "key_frame": frame, "revision": 0}
    return [b"results.test", json.dumps(header).encode(), *(P.encode_mask(m, "rle") for m in masks)]


def _synthetic_objects() -> tuple[list[dict], list[np.ndarray]]:
    """A clicked object, a confirmed forklift and a tentative one: 400 px each."""
    masks, objects = [], []
    for i, (label, score, status) in enumerate([(None, None, None), ("forklift", 0.87, "confirmed"),
                                                ("forklift", 0.41, "tentative")]):
        m = np.zeros((H, W), bool)
        m[10:30, 10 + 50 * i:30 + 50 * i] = True
        masks.append(m)
        objects.append({"id": i + 1, "present": True, "score": 0.9, "bbox": [10 + 50 * i, 10, 29 + 50 * i, 29],
                        "area": 400, "mask": {"encoding": "rle", "frame": i}, "label": label,
                        "detection_score": score, "status": status})
    return objects, masks


ALPHAS = """() => {
    const r = shown.result, d = r.overlay.getContext('2d').getImageData(0, 0, r.overlay.width, r.overlay.height).data;
    const at = (x, y) => d[(y * r.overlay.width + x) * 4 + 3];
    return [at(20, 20), at(70, 20), at(120, 20)];
}"""


@pytest.mark.slow  # a real browser
def test_labels_tentative_style_and_events_on_the_page():
    """Synthetic results and events on a PUB socket of the test's own: the page labels the found objects with their
    concept and score, paints the tentative one fainter, lists its status, and logs the events (bounded)."""
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    results = f"tcp://127.0.0.1:{free_port()}"
    pub.bind(results)
    v = ViewerProcess(results, "tcp://127.0.0.1:2", token=None)
    objects, masks = _synthetic_objects()
    try:
        with chromium() as browser:
            pg = browser.new_page(viewport={"width": 1000, "height": 560})
            pg.errors = []
            pg.on("pageerror", lambda e: pg.errors.append(str(e)))
            pg.goto(v.url)
            for frame in range(300):  # until the page shows a result and every event (a SUB joins late): 60 s
                pub.send_multipart(_result(frame, objects, masks))
                for kind in ("appeared", "confirmed", "lost", "refound", "retracted", "removed") * 3:
                    event = {"kind": kind, "stream": "test", "frame": frame, "object": 3, "label": "<b>forklift</b>",
                             "score": 0.41}
                    pub.send_multipart([b"events.test", json.dumps(event).encode()])
                pub.send_multipart([b"events.other", json.dumps({**event, "stream": "other", "object": 99}).encode()])
                if pg.evaluate("() => shown.result !== null && document.querySelectorAll('#events li').length > 0"):
                    break
                pg.wait_for_timeout(200)
            pg.wait_for_function("() => document.querySelectorAll('#objects li').length === 3", timeout=WAIT_MS)
            clicked, confirmed, tentative = pg.evaluate(ALPHAS)
            assert clicked == confirmed > tentative > 0  # the tentative object is painted fainter
            labels = pg.evaluate("() => shown.result.header.objects.map(objectLabel)")
            assert labels == ["#1 0.9", "#2 forklift 0.87", "#3 forklift 0.41"]
            assert "tentative" in pg.get_attribute('#objects li[data-id="3"]', "class")
            assert "confirmed" in pg.inner_text('#objects li[data-id="2"]')
            log = pg.locator("#events li")
            assert 0 < log.count() <= 12  # a short log, newest first
            assert "<b>forklift</b>" in log.first.inner_text()  # text, never markup
            assert pg.locator("#events b").count() == 0
            assert pg.evaluate("() => [...document.querySelectorAll('#events li')].every((li) => "
                               "/^frame \\d+: #3 /.test(li.textContent))")  # stream "other"'s never shown
            assert pg.errors == []
    finally:
        v.stop()
        pub.close(0)


TENTATIVE_PAINTED = """() => [...results.values()].some((r) => {
    if (!r.header.objects.some((o) => o.status === 'tentative' && o.area > 0)) return false;
    const d = r.overlay.getContext('2d').getImageData(0, 0, r.overlay.width, r.overlay.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] === TENTATIVE_ALPHA) return true;
    return false;
})"""
DETECTOR_MS = 300_000  # a random-weights OmDet-Turbo loads and calls in seconds each on a busy 2-core CPU


@pytest.mark.slow  # a real browser, and a daemon with a detector
def test_a_concept_added_on_the_page_is_tracked_labelled_and_removed(tmp_path):
    """The page's text box adds a concept to a real daemon (OmDet-Turbo at random weights, threshold 0: every box
    counts): its objects arrive labelled, tentative ones painted faint, their events logged; its Remove button
    removes it from the daemon."""
    from tests.daemon_helpers import present_checkpoint, start_daemon
    from tracker.client import Client

    weights = present_checkpoint(tmp_path / "present.pt")
    # 5 fps and a window of 64 frames: a frame stays promptable for about 13 s, longer than a detector call here (an
    # answer is applied on the frame it was computed on, or not at all)
    d = start_daemon("--preview-every", "1", "--checkpoint", str(weights), "--detector", "omdet-turbo",
                     "--feature-window", "64", source="test:?pattern=ball&width=160&height=120&fps=5")
    v = ViewerProcess(d.results, d.commands, token=None)
    try:
        with chromium() as browser:
            pg = browser.new_page(viewport={"width": 1000, "height": 560})
            pg.errors, pg.sent = [], []
            pg.on("pageerror", lambda e: pg.errors.append(str(e)))
            pg.on("websocket", lambda ws: ws.on("framesent", lambda payload: pg.sent.append(json.loads(payload))))
            pg.goto(v.url)
            pg.wait_for_selector("#state[data-state=live]", timeout=WAIT_MS)
            pg.wait_for_function("() => stream !== null", timeout=WAIT_MS)  # a result came: the page names its stream
            pg.fill("#concept-text", "ball")
            pg.fill("#concept-threshold", "0")
            pg.click("#add-concept")
            pg.wait_for_selector('#concepts li[data-text="ball"]', timeout=WAIT_MS)
            sent = next(m for m in pg.sent if m["op"] == "add_concept")
            assert sent["args"] == {"text": "ball", "threshold": 0, "stream": "test"}
            assert pg.input_value("#concept-text") == ""  # cleared once the daemon accepted it
            with Client(d.commands, timeout=30) as c:
                assert [x["text"] for x in c.request("list_concepts")["concepts"]] == ["ball"]
            pg.wait_for_function("() => [...results.values()].some((r) => r.header.objects.some((o) => "
                                 "o.label === 'ball' && typeof o.detection_score === 'number'))", timeout=DETECTOR_MS)
            pg.wait_for_function(TENTATIVE_PAINTED, timeout=DETECTOR_MS)
            pg.wait_for_selector('#events li[data-kind="appeared"]', timeout=DETECTOR_MS)
            assert "ball appeared" in pg.inner_text('#events li[data-kind="appeared"] >> nth=0')
            pg.click('#concepts li[data-text="ball"] .remove-concept')
            pg.wait_for_function("() => document.querySelectorAll('#concepts li').length === 0", timeout=WAIT_MS)
            with Client(d.commands, timeout=30) as c:
                assert c.request("list_concepts")["concepts"] == []
            assert pg.errors == [] and pg.inner_text("#error") == ""
    finally:
        v.stop()
        d.stop()
