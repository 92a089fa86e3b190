"""A SUB prefix "results.cam" also matches "results.cam2": the Python client and the viewer compare
topics exactly (docs/protocol.md). Real PUB/SUB sockets on loopback, messages made by the protocol module."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import torch
import zmq

from tracker import protocol as P
from tracker.client import Result, Subscriber
from tracker.client.spawn import free_port
from tracker.core.results import make_result
from tracker.protocol import messages
from tracker.viewer.server import Viewer, ViewerSettings

FRAME = messages.FrameInfo(source_index=0, width=8, height=6, pts_ns=None, capture_ns=time.monotonic_ns())


def _result(stream: str, seq: int, obj_id: int) -> list[bytes]:
    logits = torch.full((1, 1, 6, 8), -1.0)
    logits[..., 1:3, 2:5] = 1.0
    result = make_result(seq, {obj_id: (logits, torch.tensor([[2.0]]))}, 6, 8)
    return messages.result_message(stream, seq, FRAME, result, {"step": 1.0}, 0, "rle")


def _publish_until(pub: zmq.Socket, got, timeout_s: float = 10.0) -> None:
    """Publish cam2's then cam's message until the subscriber reports one (SUB joins asynchronously)."""
    deadline, seq = time.monotonic() + timeout_s, 0
    while not got() and time.monotonic() < deadline:
        pub.send_multipart(_result("cam2", seq, 2))
        pub.send_multipart(_result("cam", seq, 1))
        seq += 1
        time.sleep(0.05)


def test_subscriber_of_one_stream_ignores_a_stream_whose_name_extends_it():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(endpoint)
    received: list[Result] = []
    try:
        with Subscriber(endpoint, stream="cam", context=ctx) as sub:
            def got():
                r = sub.recv(0.05)
                if r is not None:
                    received.append(r)
                return len(received) >= 5
            _publish_until(pub, got)
    finally:
        pub.close(0)
        ctx.term()
    assert len(received) >= 5
    assert all(r.header["stream"] == "cam" and set(r.masks) == {1} for r in received)
    assert received[0].masks[1].sum() == 6


class _Page:
    """Stands in for a browser's queue: what the viewer would send to a page."""

    def __init__(self):
        self.frames: list[bytes] = []

    def push_frame(self, data: bytes) -> None:
        self.frames.append(data)

    def push_control(self, message: dict) -> None:
        pass


def test_viewer_of_one_stream_relays_only_that_stream():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(endpoint)
    page = _Page()

    async def run() -> None:
        viewer = Viewer(ViewerSettings(results=endpoint, commands=f"tcp://127.0.0.1:{free_port()}", stream="cam"))
        viewer.browsers.add(page)
        pump = asyncio.create_task(viewer._pump())
        try:
            deadline, seq = time.monotonic() + 10.0, 0
            while len(page.frames) < 5 and time.monotonic() < deadline:
                pub.send_multipart(_result("cam2", seq, 2))
                pub.send_multipart(_result("cam", seq, 1))
                seq += 1
                await asyncio.sleep(0.05)
        finally:
            pump.cancel()
            viewer._ctx.destroy(0)

    try:
        asyncio.run(run())
    finally:
        pub.close(0)
        ctx.term()
    assert len(page.frames) >= 5
    for data in page.frames:
        n = int.from_bytes(data[:4], "little")
        lengths = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "little") for i in range(n)]
        start = 4 + 4 * n
        topic = data[start: start + lengths[0]]
        header = json.loads(data[start + lengths[0]: start + lengths[0] + lengths[1]])
        assert topic == b"results.cam" and header["stream"] == "cam"


@pytest.mark.parametrize("name", [".", "..", "...", "a/b", "", "x" * 65, "a b"])
def test_a_stream_name_is_a_plain_path_component(name, tmp_path):
    """A recording goes to DIR/<stream>: "." and ".." (and anything but a plain name) are refused by the
    config, the request schema and the command line alike."""
    from tracker.cli.serve import _source_overrides
    from tracker.daemon.config import ConfigError, load_config
    from tracker.errors import SamtrackError

    assert not P.is_stream_name(name)
    with pytest.raises(ConfigError):
        load_config(None, {"stream.name": name})
    with pytest.raises(P.ProtocolError) as e:
        P.parse_request([P.request(1, "ping", {"stream": name})])
    assert e.value.code == "bad_request"
    with pytest.raises(SamtrackError):
        _source_overrides([f"{name}=test:", "b=test:"])
    assert P.is_stream_name("cam.1") and P.is_stream_name("_") and P.is_stream_name("a" * 64)
