"""`samtrack view` in a real browser: Debian's Chromium driven by Playwright against a real daemon and a
real viewer process, all on loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.daemon_helpers import curve_config, present_checkpoint, served_streams, start_daemon
from tests.gst_helpers import CODECS, encode_test_file
from tests.viewer_helpers import ViewerProcess, chromium, daemon_objects
from tracker import protocol as P
from tracker.client import Client, Result, Subscriber
from tracker.client.spawn import free_port, stop_daemon
from tracker.viewer.server import as_rle, pack

ARTIFACTS = Path(os.environ.get("SAMTRACK_ARTIFACTS", Path(__file__).resolve().parents[1] / "build" / "test-artifacts"))
SOURCE = "test:?pattern=ball&width=160&height=120&fps=10"
WAIT_MS = 30_000  # page conditions: frames arrive within a second, a prompt reply within a few


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """Weights with objects forced present: the masks the page paints are not empty."""
    weights = present_checkpoint(tmp_path_factory.mktemp("weights") / "present.pt")
    d = start_daemon("--preview-every", "1", "--checkpoint", str(weights), source=SOURCE)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def viewer(daemon):
    v = ViewerProcess(daemon.results, daemon.commands)
    yield v
    assert v.stop() == 0


@pytest.fixture(scope="module")
def page(browser, viewer):
    """One page for the module's tests, in order: they build on each other like a user's session."""
    pg = browser.new_page(viewport={"width": 1000, "height": 560})
    pg.requested, pg.sent, pg.errors = [], [], []
    pg.on("request", lambda r: pg.requested.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("websocket", lambda ws: ws.on("framesent", lambda payload: pg.sent.append(json.loads(payload))))
    pg.goto(viewer.url)
    yield pg
    assert pg.errors == [], f"JavaScript errors in the page: {pg.errors}"
    pg.close()


def shown_frame(page) -> int:
    text = page.inner_text("#frame")
    return int(text) if text.isdigit() else -1


def canvas_point(page, fx: float, fy: float) -> tuple[float, float]:
    """Screen position of a point given as a fraction of the canvas."""
    box = page.locator("#view").bounding_box()
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy


def last_sent(page, op: str) -> dict:
    return next(m for m in reversed(page.sent) if m["op"] == op)


@pytest.mark.slow  # a real browser and daemon
def test_page_loads_offline_and_frames_advance(page, viewer):
    page.wait_for_selector("#state[data-state=live]", timeout=WAIT_MS)
    page.wait_for_function("() => /^\\d+$/.test(document.getElementById('frame').textContent)", timeout=WAIT_MS)
    first = shown_frame(page)
    page.wait_for_function(f"() => Number(document.getElementById('frame').textContent) > {first + 3}",
                           timeout=WAIT_MS)
    assert re.fullmatch(r"\d+(\.\d{1,2})? ", page.inner_text("#fps") + " ")
    assert page.inner_text("#latency").endswith(" ms")
    assert "source" in page.inner_text("#dropped")
    # nothing but this server, over loopback (no CDN, no fonts, no analytics)
    assert page.requested and all(u.startswith(f"http://127.0.0.1:{viewer.port}/") for u in page.requested)


@pytest.mark.slow  # a real browser and daemon
def test_click_creates_object_1_on_the_frame_seen_and_its_mask_is_published(page, daemon):
    x, y = canvas_point(page, 0.5, 0.5)
    before = shown_frame(page)
    page.mouse.click(x, y)
    page.wait_for_selector('#objects li[data-id="1"]', timeout=WAIT_MS)
    req = last_sent(page, "add_points")
    assert req["args"]["object"] == 1 and req["args"]["labels"] == [1]
    # the click names the frame on screen, not "latest": the daemon applies it there and catches up
    assert isinstance(req["args"]["frame"], int) and before <= req["args"]["frame"] <= before + 5
    px, py = req["args"]["points"][0]
    assert abs(px - 80) < 2 and abs(py - 60) < 2  # the canvas centre, in frame pixels (160x120)
    assert page.inner_text("#error") == ""
    with Subscriber(daemon.results) as sub:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = sub.recv(5.0)
            if isinstance(r, Result) and 1 in r.masks:
                assert r.masks[1].shape == (120, 160)
                break
        else:
            pytest.fail("no published result carries object 1's mask")
    # the page decoded the published RLE masks: painted pixels == the areas in the same header
    page.wait_for_function("() => shown.result && shown.result.header.objects.length > 0", timeout=WAIT_MS)
    painted, area = page.evaluate("""() => {
        const r = shown.result, c = r.overlay.getContext('2d');
        const d = c.getImageData(0, 0, r.overlay.width, r.overlay.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0;
        return [n, r.header.objects.reduce((s, o) => s + o.area, 0)];
    }""")
    assert painted == area > 0


@pytest.mark.slow  # a real browser and daemon
def test_drag_creates_object_2_with_a_box(page, daemon):
    page.click("#new-object")
    assert page.inner_text("#selected").startswith("#2")
    x0, y0 = canvas_point(page, 0.2, 0.2)
    x1, y1 = canvas_point(page, 0.6, 0.7)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
    page.mouse.move(x1, y1, steps=3)
    page.mouse.up()
    page.wait_for_selector('#objects li[data-id="2"]', timeout=WAIT_MS)
    req = last_sent(page, "add_box")
    bx0, by0, bx1, by1 = req["args"]["box"]
    assert req["args"]["object"] == 2 and isinstance(req["args"]["frame"], int)
    assert abs(bx0 - 32) < 2 and abs(by0 - 24) < 2 and abs(bx1 - 96) < 2 and abs(by1 - 84) < 2
    assert sorted(daemon_objects(daemon)) == [1, 2]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function("() => shown.result && shown.result.header.objects.length === 2", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "viewer.png"))
    assert (ARTIFACTS / "viewer.png").stat().st_size > 10_000


@pytest.mark.slow  # a real browser and daemon
def test_modifier_click_is_a_negative_point(page):
    page.click('#objects li[data-id="1"]')
    n = len(page.sent)
    x, y = canvas_point(page, 0.1, 0.9)
    page.keyboard.down("Shift")
    page.mouse.click(x, y)
    page.keyboard.up("Shift")
    for _ in range(100):  # the request leaves the page (bounded: 5 s)
        if len(page.sent) > n:
            break
        page.wait_for_timeout(50)
    page.wait_for_function("() => pending.size === 0", timeout=WAIT_MS)  # and its reply came back
    req = last_sent(page, "add_points")
    assert req["args"]["object"] == 1 and req["args"]["labels"] == [0]
    assert page.inner_text("#error") == ""


@pytest.mark.slow  # a real browser and daemon
def test_a_rejected_prompt_shows_the_daemons_message(page):
    page.evaluate("() => request('add_points', {object: 1, points: [[5000, 10]], labels: [1], frame: shown.frame})")
    page.wait_for_selector("#error.shown", timeout=WAIT_MS)
    assert page.get_attribute("#error", "data-code") == "bad_prompt"
    assert "add_points rejected: bad_prompt" in page.inner_text("#error")
    assert "5000" in page.inner_text("#error")  # the daemon's own explanation, not a generic failure


@pytest.mark.slow  # a real browser and daemon
def test_remove_and_reset(page, daemon):
    page.click('#objects li[data-id="2"]')
    page.keyboard.press("Escape")
    assert page.inner_text("#selected").startswith("none")
    page.click('#objects li[data-id="2"]')
    page.click("#remove-object")
    page.wait_for_function("() => !document.querySelector('#objects li[data-id=\"2\"]')", timeout=WAIT_MS)
    assert daemon_objects(daemon) == [1]
    page.click("#reset")
    page.wait_for_function("() => document.querySelectorAll('#objects li').length === 0", timeout=WAIT_MS)
    assert daemon_objects(daemon) == []
    time.sleep(1.0)  # results published after the reset carry no objects either
    assert page.evaluate("() => shown.result.header.objects.length") == 0


@pytest.mark.parametrize("encoding", ["bits", "png", "rle"])
def test_masks_reach_the_page_as_the_same_rle(encoding):
    rng = np.random.default_rng(0)
    masks = [rng.random((30, 41)) > 0.6, np.zeros((30, 41), bool)]
    header = {"type": "result", "width": 41, "height": 30,
              "objects": [{"id": i + 1, "mask": {"encoding": encoding, "frame": i}} for i in range(2)]}
    parts = [b"results.x", json.dumps(header).encode(), *(P.encode_mask(m, encoding) for m in masks)]
    out = as_rle(json.loads(parts[1]), parts)
    assert all(o["mask"]["encoding"] == "rle" for o in json.loads(out[1])["objects"])
    for m, data in zip(masks, out[2:], strict=True):
        assert np.array_equal(P.decode_mask(data, "rle", 30, 41), m)
    blob = pack(out)  # what the page unpacks: count, lengths, parts
    n = int.from_bytes(blob[:4], "little")
    lengths = [int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "little") for i in range(n)]
    assert n == 4 and lengths == [len(p) for p in out] and blob.endswith(b"".join(out))


@pytest.mark.slow  # a real browser and daemon
def test_daemon_restart_shows_reconnecting_then_resumes_then_stream_end(browser, tmp_path):
    first = start_daemon("--preview-every", "1", source=SOURCE)
    v = ViewerProcess(first.results, first.commands, token=None)
    pg = browser.new_page()
    try:
        pg.goto(v.url)
        pg.wait_for_selector("#state[data-state=live]", timeout=WAIT_MS)
        assert first.stop() == 0
        pg.wait_for_selector("#state[data-state=unreachable]", timeout=WAIT_MS)
        assert "no answer from the daemon" in pg.inner_text("#state-message")
        # the same endpoints again, now on a short file: frames resume, then the stream ends
        clip = encode_test_file(tmp_path / "clip.mkv", CODECS["h264.mkv"], frames=60, width=160, height=120)
        second = start_daemon("--preview-every", "1", source=str(clip), wait_for_frame=False,
                              endpoints=(first.results, first.commands))
        try:
            pg.wait_for_selector("#state[data-state=live]", timeout=WAIT_MS)
            pg.wait_for_selector("#state[data-state=ended]", timeout=WAIT_MS * 2)
            assert "end of stream" in pg.inner_text("#state-message")
            assert second.proc.wait(timeout=30) == 0
        finally:
            second.stop()
    finally:
        pg.close()
        v.stop()


@pytest.mark.slow  # a real browser and daemon
def test_viewer_reaches_a_curve_daemon_with_its_keys(tmp_path):
    """Through CurveZMQ: results reach the WebSocket and a request gets the daemon's reply."""
    import asyncio
    import concurrent.futures

    import aiohttp

    cfg, keys = curve_config(tmp_path, "viewer")
    d = start_daemon("--config", str(cfg), curve=keys)
    v = ViewerProcess(d.results, d.commands, "--client-key", keys.secret_key_file,
                      "--server-key", keys.server_public_key_file, token=None)

    async def session() -> tuple[dict, dict]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"http://127.0.0.1:{v.port}/ws") as ws:
            header = None
            async with asyncio.timeout(30):
                while header is None:
                    msg = await ws.receive()
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        n = int.from_bytes(msg.data[:4], "little")
                        first, second = (int.from_bytes(msg.data[4 + 4 * i:8 + 4 * i], "little") for i in (0, 1))
                        start = 4 + 4 * n + first
                        header = json.loads(msg.data[start:start + second])
                await ws.send_str(json.dumps({"id": 7, "op": "ping"}))
                while True:  # results keep coming as binary messages; the reply is text
                    msg = await ws.receive()
                    if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("id") == 7:
                        return header, json.loads(msg.data)

    try:
        # in a thread of its own: Playwright's sync API keeps an event loop running in this one
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            header, reply = pool.submit(asyncio.run, session()).result(timeout=60)
        assert header["type"] in ("result", "preview") and header["stream"] == "test"
        assert reply["ok"] and reply["result"]["pong"] is True
    finally:
        v.stop()
        d.stop()


@pytest.mark.slow  # a real browser and a daemon with two streams
def test_the_page_picks_a_stream_and_prompts_name_it(browser):
    d = start_daemon("--source", "a=" + SOURCE, "--source", "b=" + SOURCE_B, "--preview-every", "1", source=None)
    try:
        _pick_b_and_prompt(browser, d.results, d.commands, d.commands, d.commands)
    finally:
        d.stop()


@pytest.mark.slow  # a real browser, two daemons and a broker
def test_the_page_works_through_a_broker(browser):
    """The same page on `samtrack broker` in front of two daemons (stream a on one, b on the other)."""
    a = start_daemon("--preview-every", "1", source=SOURCE, stream="a")
    b = start_daemon("--preview-every", "1", source=SOURCE_B, stream="b")
    results, commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    broker = subprocess.Popen([sys.executable, "-m", "tracker.cli", "broker", "--results", results, "--commands",
                               commands, "--daemon", a.results, a.commands, "--daemon", b.results, b.commands],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(commands, timeout=30) as c:  # the broker learns each daemon's streams from its first ping
            deadline = time.monotonic() + 60
            while served_streams(c) != ["a", "b"] and time.monotonic() < deadline:
                time.sleep(0.2)
        _pick_b_and_prompt(browser, results, commands, a.commands, b.commands)
    finally:
        assert stop_daemon(broker) == 0
        a.stop()
        b.stop()


SOURCE_B = "test:?pattern=smpte&width=200&height=100&fps=10"


def _pick_b_and_prompt(browser, results: str, commands: str, commands_a: str, commands_b: str) -> None:
    """The page shows both streams, shows b's frames once picked, and a click prompts b and only b."""
    v = ViewerProcess(results, commands, token=None)
    pg = browser.new_page(viewport={"width": 1000, "height": 560})
    pg.sent = []
    pg.on("websocket", lambda ws: ws.on("framesent", lambda payload: pg.sent.append(json.loads(payload))))
    try:
        pg.goto(v.url)
        pg.wait_for_selector("#stream-picker:not([hidden])", timeout=WAIT_MS)
        pg.wait_for_function("() => document.querySelectorAll('#stream option').length === 2", timeout=WAIT_MS)
        pg.select_option("#stream", "b")
        pg.wait_for_function("() => shown.result && shown.result.header.stream === 'b'", timeout=WAIT_MS)
        assert pg.evaluate("() => [canvas.width, canvas.height]") == [200, 100]  # stream b's frames, not a's
        pg.mouse.click(*canvas_point(pg, 0.5, 0.5))
        pg.wait_for_selector('#objects li[data-id="1"]', timeout=WAIT_MS)
        assert last_sent(pg, "add_points")["args"]["stream"] == "b"
        with Client(commands_b, timeout=30, stream="b") as cb, Client(commands_a, timeout=30, stream="a") as ca:
            assert [o["id"] for o in cb.list_objects()["objects"]] == [1]
            assert ca.list_objects()["objects"] == []  # the prompt went to the stream on screen only
    finally:
        pg.close()
        v.stop()
