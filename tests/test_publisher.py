"""The publisher thread: results handed over without waiting, the oldest dropped (counted and published)
when the thread falls behind, the end message never dropped. Real PUB/SUB sockets on loopback."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import zmq

from pipelines.frame import Frame
from tracker.client.spawn import free_port
from tracker.core.results import make_result
from tracker.daemon.publisher import Publisher
from tracker.protocol import messages

H, W = 1080, 1920  # full-HD masks: RLE-encoding one takes milliseconds, handing one over microseconds


def _frame_and_result(i: int):
    low = torch.from_numpy(np.random.default_rng(i).normal(size=(1, 1, 64, 64)).astype(np.float32))
    frame = Frame(i, None, time.monotonic_ns(), np.zeros((H, W, 3), np.uint8))
    return frame, make_result(i, {1: (low, torch.tensor([[1.0]])), 2: (-low, torch.tensor([[1.0]]))}, H, W)


def _pair() -> tuple[zmq.Context, zmq.Socket, zmq.Socket]:
    """A PUB socket bound on loopback and a SUB socket subscribed to everything, the subscription through."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    pub.bind(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    deadline = time.monotonic() + 10  # until the subscription has reached the PUB socket: nothing is lost after
    while time.monotonic() < deadline:
        pub.send_multipart([b"probe", b"{}"])
        if sub.poll(50):
            break
    while sub.poll(200):  # the probes still in flight
        sub.recv_multipart()
    return ctx, pub, sub


def _until_end(sub: zmq.Socket, stream: str) -> list[dict]:
    """The headers received up to `stream`'s end message (bounded: 30 s)."""
    headers, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline and (not headers or headers[-1]["type"] != "end"
                                            or headers[-1]["stream"] != stream):
        if sub.poll(500):
            headers.append(json.loads(sub.recv_multipart()[1]))
    return headers


def _run(queue_size: int, n: int = 40, ended: str | None = None) -> tuple[Publisher, list[dict]]:
    """n results of stream "cam" through a publisher, then its end; `ended`: another stream whose end message
    is handed over after the first result (while the thread is busy encoding it)."""
    ctx, pub, sub = _pair()
    items = [_frame_and_result(i) for i in range(n)]
    publisher = Publisher(pub, "rle", queue_size=queue_size)
    publisher.add_stream("cam")
    try:
        if ended is not None:
            publisher.add_stream(ended)
        for k, (frame, result) in enumerate(items):
            publisher.publish("cam", frame, result, {"step": 1.0}, 0)
            if k == 0 and ended is not None:
                publisher.publish_end(ended, None, "end of stream")
        publisher.publish_end("cam", n - 1, "end of stream")
        assert publisher.close(linger_ms=5000)  # the thread sent everything and closed its socket
        headers = _until_end(sub, "cam")
    finally:
        pub.close(0)
        sub.close(0)
        ctx.term()
    return publisher, headers


def test_a_full_queue_drops_the_oldest_results_and_says_so():
    publisher, headers = _run(queue_size=1)
    results = [h for h in headers if h["type"] == "result"]
    assert headers[-1]["type"] == "end" and headers[-1]["frame"] == 39
    assert publisher.dropped("cam") > 0 and len(results) == 40 - publisher.dropped("cam")
    assert results[-1]["frame"] == 39  # the freshest result is never the one dropped
    frames = [h["frame"] for h in results]
    assert frames == sorted(frames) and [h["seq"] for h in headers] == list(range(len(headers)))
    counts = [h["publish_dropped"] for h in results]
    assert counts == sorted(counts) and counts[-1] == publisher.dropped("cam")
    # time in the queue: after the hand-over, before the header was written (both clocks CLOCK_MONOTONIC)
    for h in results:
        assert 0 < h["timings_ms"]["publish_queue"] <= (h["publish_ns"] - h["capture_ns"]) / 1e6, h


@pytest.mark.parametrize("queue_size", [0, 64])
def test_without_pressure_every_result_is_published(queue_size):
    publisher, headers = _run(queue_size=queue_size)
    assert publisher.dropped("cam") == 0
    assert [h["frame"] for h in headers] == list(range(40)) + [39] and headers[-1]["type"] == "end"
    assert all(h["publish_dropped"] == 0 for h in headers[:-1])


def test_a_full_queue_never_drops_another_streams_end_message():
    publisher, headers = _run(queue_size=1, ended="door")
    assert [h["type"] for h in headers if h["stream"] == "door"] == ["end"]
    assert publisher.dropped("cam") > 0 and publisher.dropped("door") == 0


def test_events_and_end_messages_leave_in_the_order_they_were_handed_over():
    """A full queue drops its oldest waiting result, never an event or an end message, and never reorders what it
    keeps: a result handed over while only events wait waits its turn behind them. The publisher's thread is held
    in its first result's `on_sent` until a timer lets it go, so the queue (2) is full at known points."""
    import threading

    entered, gate = threading.Event(), threading.Event()

    def on_sent(stream, capture_ns, queue_ms, publish_ms):
        entered.set()
        gate.wait(10)

    def event(obj: int):
        return [messages.Event("appeared", 0, obj, "cup", 0.5)]

    ctx, pub, sub = _pair()
    publisher = Publisher(pub, "rle", queue_size=2, on_sent=on_sent)
    for stream in ("cam", "door"):
        publisher.add_stream(stream)
    frames = [_frame_and_result(i) for i in range(3)]
    timer = threading.Timer(0.5, gate.set)
    try:
        publisher.publish("cam", *frames[0], {"step": 1.0}, 0)
        assert entered.wait(10)  # the thread holds result 0 now: what follows waits in the queue
        publisher.publish_events("cam", event(1))
        publisher.publish("cam", *frames[1], {"step": 1.0}, 0)
        publisher.publish_events("cam", event(2))  # full: result 1 goes
        timer.start()
        publisher.publish("cam", *frames[2], {"step": 1.0}, 0)  # full of events: waits until the thread moves on
        publisher.publish_end("door", None, "end of stream")
        publisher.publish_events("cam", event(3))
        publisher.publish_end("cam", 2, "end of stream")
        assert publisher.close(linger_ms=5000)
        headers = _until_end(sub, "cam")
    finally:
        gate.set()
        timer.cancel()
        pub.close(0)
        sub.close(0)
        ctx.term()
    keys = [(h["stream"], h["type"], h.get("frame") if h["type"] == "result" else h.get("object")) for h in headers]
    handed = [("cam", "result", 0), ("cam", "event", 1), ("cam", "result", 1), ("cam", "event", 2),
              ("cam", "result", 2), ("door", "end", None), ("cam", "event", 3), ("cam", "end", None)]
    # What left is what was handed over, in that order, less the results dropped (result 1 surely: the queue was
    # full of it and event 1 when event 2 came; result 2 when event 3 came before the thread took it).
    assert [k for k in handed if k in keys] == keys, keys
    missing = [k for k in handed if k not in keys]
    assert ("cam", "result", 1) in missing and all(t == "result" for _, t, _ in missing), keys
    assert publisher.dropped("cam") == len(missing) and publisher.dropped("door") == 0
    results = [h for h in headers if h["type"] == "result"]
    assert results[0]["publish_dropped"] == 0 and all(h["publish_dropped"] == 1 for h in results[1:])


def test_a_result_behind_a_stuck_thread_and_events_is_counted_as_dropped(monkeypatch):
    """A result that waits behind events for a thread that never makes room is given up after CLOSE_TIMEOUT_S,
    and counted like any result dropped (published as publish_dropped), not lost silently."""
    import threading

    from tracker.daemon import publisher as pubmod

    monkeypatch.setattr(pubmod, "CLOSE_TIMEOUT_S", 0.3)
    entered, gate = threading.Event(), threading.Event()
    ctx, pub, sub = _pair()
    publisher = Publisher(pub, "rle", queue_size=1, on_sent=lambda *a: (entered.set(), gate.wait(10)))
    publisher.add_stream("cam")
    frames = [_frame_and_result(i) for i in range(3)]
    try:
        publisher.publish("cam", *frames[0], {"step": 1.0}, 0)
        assert entered.wait(10)  # the thread is held in result 0's on_sent
        publisher.publish_events("cam", [messages.Event("appeared", 0, 1, "cup", 0.5)])  # the queue is full
        publisher.publish("cam", *frames[1], {"step": 1.0}, 0)  # no result to drop, no room within 0.3 s
        assert publisher.dropped("cam") == 1
        gate.set()
        publisher.publish("cam", *frames[2], {"step": 1.0}, 0)
        publisher.publish_end("cam", 2, "end of stream")
        assert publisher.close(linger_ms=5000)
        headers = _until_end(sub, "cam")
    finally:
        gate.set()
        pub.close(0)
        sub.close(0)
        ctx.term()
    assert [(h["type"], h["frame"] if h["type"] == "result" else h.get("object")) for h in headers] == \
        [("result", 0), ("event", 1), ("result", 2), ("end", None)]
    assert headers[2]["publish_dropped"] == 1


def test_only_the_publisher_thread_touches_its_socket(monkeypatch):
    """The thread closes the socket itself; a thread still busy at close() keeps it (close says so) instead of
    the caller closing a socket another thread may be sending on (libzmq aborts on that)."""
    import threading

    from tracker.daemon import publisher as pubmod

    ctx = zmq.Context()
    closed_by: list[str] = []
    original = Publisher._close_socket

    def close_socket(self):
        closed_by.append(threading.current_thread().name)
        original(self)

    monkeypatch.setattr(Publisher, "_close_socket", close_socket)
    pub = ctx.socket(zmq.PUB)
    publisher = Publisher(pub, "rle", queue_size=2)
    publisher.add_stream("cam")
    frame, result = _frame_and_result(0)
    publisher.publish("cam", frame, result, {"step": 1.0}, 0)
    assert publisher.close() and pub.closed and closed_by == ["publisher"]

    stuck, release = ctx.socket(zmq.PUB), threading.Event()
    busy = Publisher(stuck, "rle", queue_size=2)
    busy.add_stream("cam")
    monkeypatch.setattr(busy, "_send", lambda item: release.wait(30))
    monkeypatch.setattr(pubmod, "CLOSE_TIMEOUT_S", 0.5)
    busy.publish("cam", frame, result, {"step": 1.0}, 0)
    time.sleep(0.2)  # the thread is inside _send now
    assert busy.close() is False and not stuck.closed  # left to its thread
    release.set()
    busy._thread.join(10)
    assert stuck.closed and closed_by == ["publisher", "publisher"]
    ctx.term()
