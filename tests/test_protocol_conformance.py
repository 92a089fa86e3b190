"""A client written from docs/protocol.md alone: raw pyzmq + json + pycocotools, no samtrack code.

Every op is round-tripped and a published mask is decoded with pycocotools."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
import zmq
from pycocotools import mask as mask_util

from tests.daemon_helpers import present_checkpoint, start_daemon

HEADER_FIELDS = {"v", "type", "stream", "seq", "frame", "source_index", "width", "height", "pts_ns",
                 "capture_ns", "publish_ns", "publish_unix_ns", "capture_us", "publish_us", "publish_unix_us",
                 "timings_ms", "dropped", "publish_dropped", "objects", "source", "key_frame", "age_ms", "revision"}
PING_FIELDS = {"pong", "protocol", "stream", "frame", "source", "uptime_s", "window", "metrics_port", "precision",
               "streams", "state", "backend"}
STAGES = {"queue", "preprocess", "encoder", "track", "memory_encoder", "bookkeeping", "postprocess", "step",
          "publish_queue"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """Weights with objects forced present: published masks are not empty, so decoding them is checked."""
    d = start_daemon("--checkpoint", str(present_checkpoint(tmp_path_factory.mktemp("weights") / "present.pt")))
    yield d
    assert d.stop() == 0


@pytest.fixture()
def sockets(daemon):
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(daemon.commands)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"results.test")
    sub.connect(daemon.results)
    yield dealer, sub
    for s in (dealer, sub):
        s.close(0)
    ctx.term()


def call(dealer, rid, op, args=None, extra=()):
    dealer.send_multipart([json.dumps({"v": 1, "id": rid, "op": op, "args": args or {}}).encode(), *extra])
    assert dealer.poll(30000), f"no reply to {op}"
    frames = dealer.recv_multipart()
    assert len(frames) == 1
    reply = json.loads(frames[0])
    assert reply["v"] == 1 and reply["id"] == rid
    return reply


def next_result(sub, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sub.poll(1000):
            topic, header, *masks = sub.recv_multipart()
            assert topic == b"results.test"
            return json.loads(header), masks
    raise AssertionError("no result published")


def test_every_op_round_trips_and_masks_decode_with_pycocotools(sockets):
    dealer, sub = sockets
    r = call(dealer, "p", "ping")
    assert r["ok"] and r["result"]["pong"] is True and r["result"]["protocol"] == 1
    assert call(dealer, 1, "reset")["result"] == {"objects": []}

    header, _ = next_result(sub)
    assert HEADER_FIELDS <= set(header) and header["type"] == "result" and header["v"] == 1
    assert STAGES <= set(header["timings_ms"])
    w, h = header["width"], header["height"]

    r = call(dealer, "a", "add_points", {"object": 3, "points": [[w / 2, h / 2]], "labels": [1],
                                         "frame": header["frame"]})
    assert r["ok"] and r["result"]["frame"] == header["frame"] and r["result"]["object"]["id"] == 3
    assert set(r["result"]) == {"frame", "object", "objects", "retracked", "elapsed_ms", "latest"}
    assert r["result"]["elapsed_ms"] > 0
    r = call(dealer, "b", "add_box", {"object": 4, "box": [5, 5, w / 3, h / 3]})
    assert r["ok"] and r["result"]["object"]["id"] == 4

    m = np.zeros((h, w), np.uint8)
    m[h // 4: h // 2, w // 4: w // 2] = 1
    rle = mask_util.encode(np.asfortranarray(m))["counts"]
    bits = np.packbits(m.reshape(-1).astype(bool)).tobytes()
    png = cv2.imencode(".png", m * 255)[1].tobytes()
    ys, xs = np.nonzero(m)
    for enc, data in (("rle", rle), ("bits", bits), ("png", png)):
        r = call(dealer, f"m-{enc}", "add_mask", {"object": 5, "encoding": enc, "size": [h, w]}, [data])
        assert r["ok"], r
        # on its own frame a mask prompt is the output, through the model's low-res grid (image_size/4 cells,
        # 10 x 7.5 px here): what was sent, its box within a cell and its area within 10 %
        o = r["result"]["object"]
        assert np.abs(np.subtract(o["bbox"], [xs.min(), ys.min(), xs.max(), ys.max()])).max() <= 7, (enc, o)
        assert abs(o["area"] - int(m.sum())) <= 0.1 * int(m.sum()), (enc, o)

    for _ in range(30):  # a result with all three objects and their masks
        header, masks = next_result(sub)
        objs = {o["id"]: o for o in header["objects"]}
        if {3, 4, 5} <= set(objs):
            break
    assert {3, 4, 5} <= set(objs)
    assert all(objs[i]["area"] > 0 for i in (3, 4, 5)), objs  # masks to decode, not empty ones
    for o in header["objects"]:
        assert o["mask"]["encoding"] == "rle"
        decoded = mask_util.decode({"size": [h, w], "counts": masks[o["mask"]["frame"]]})
        assert decoded.shape == (h, w) and int(decoded.sum()) == o["area"]
        if o["bbox"] is not None:
            ys, xs = np.nonzero(decoded)
            assert o["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]

    r = call(dealer, "l", "list_objects")
    assert [o["id"] for o in r["result"]["objects"]] == [3, 4, 5]
    r = call(dealer, "s", "stats")
    assert r["ok"] and r["result"]["frames"] > 0 and "p50" in r["result"]["timings_ms"]["step"]
    assert call(dealer, "r", "remove_object", {"object": 4})["result"]["objects"] == [3, 5]
    r = call(dealer, "r2", "remove_object", {"object": 4})
    assert r["ok"] is False and r["error"]["code"] == "unknown_object"
    assert call(dealer, "z", "reset")["ok"]


def test_req_socket_and_typed_errors(daemon):
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.connect(daemon.commands)
    try:
        cases = [
            (b"not json", "bad_json"),
            (json.dumps({"v": 1, "id": 1, "op": "fly"}).encode(), "unknown_op"),
            (json.dumps({"v": 2, "id": 1, "op": "ping"}).encode(), "unsupported_version"),
            (json.dumps({"v": 1, "id": 1, "op": "ping", "args": {"x": 1}}).encode(), "bad_request"),
            (json.dumps({"v": 1, "id": 1, "op": "ping", "args": {}, "x": 1}).encode(), "bad_request"),
            (json.dumps({"v": 1, "id": 1, "op": "add_points",
                         "args": {"object": 1, "points": [[1, 2]]}}).encode(), "bad_request"),
            (json.dumps({"v": 1, "id": 1, "op": "add_mask",
                         "args": {"object": 1, "encoding": "rle", "size": [4, 4]}}).encode(), "bad_frames"),
            (json.dumps({"v": 1, "id": 1, "op": "add_points",
                         "args": {"object": 1, "points": [[1e9, 2]], "labels": [1]}}).encode(), "bad_prompt"),
            (json.dumps({"v": 1, "id": 1, "op": "add_points",  # the doc's table: labels not 0/1 are bad_prompt
                         "args": {"object": 1, "points": [[1, 2]], "labels": [2]}}).encode(), "bad_prompt"),
            (json.dumps({"v": 1, "id": 1, "op": "add_box",
                         "args": {"object": 1, "box": [1, 2, 30, 40], "points": [[3, 4]], "labels": [3]}}).encode(),
             "bad_prompt"),
            # the doc's table: lists of the wrong length are bad_request (the chaos soak found bad_prompt here)
            (json.dumps({"v": 1, "id": 1, "op": "add_points",
                         "args": {"object": 1, "points": [[1, 2]], "labels": [1, 0]}}).encode(), "bad_request"),
            (json.dumps({"v": 1, "id": 1, "op": "add_box",
                         "args": {"object": 1, "box": [1, 2, 30, 40], "points": [[3, 4], [5, 6]], "labels": [1]}}
                        ).encode(), "bad_request"),
            # points and labels come together: a box with points but no labels is malformed
            (json.dumps({"v": 1, "id": 1, "op": "add_box",
                         "args": {"object": 1, "box": [1, 2, 30, 40], "points": [[3, 4]]}}).encode(), "bad_request"),
        ]
        for payload, code in cases:
            req.send(payload)
            assert req.poll(30000)
            reply = json.loads(req.recv())
            assert reply["ok"] is False and reply["error"]["code"] == code, (payload, reply)
            assert reply["error"]["message"]
    finally:
        req.close(0)
        ctx.term()


def test_stats_carries_everything_of_ping_and_documented_fields(sockets):
    dealer, sub = sockets
    next_result(sub)
    ping = call(dealer, 1, "ping")["result"]
    stats = call(dealer, 2, "stats")["result"]
    assert PING_FIELDS == set(ping), set(ping) ^ PING_FIELDS
    assert PING_FIELDS <= set(stats) and stats["pong"] is True and stats["protocol"] == 1
    assert isinstance(stats["metrics_port"], int) and stats["metrics_port"] > 0
    assert ping["precision"] in ("fp32", "bf16")
    assert {"step", "publish", "queue"} <= set(stats["timings_ms"])
    assert {"frames", "frame_errors", "prompts", "requests", "errors", "fps", "objects", "held_bytes",
            "retracked_frames", "publish_dropped", "motion_frames", "answered_fps", "between_key_frames"} <= set(stats)


def test_args_may_be_omitted_and_coordinates_may_be_fractional(sockets):
    dealer, sub = sockets
    dealer.send_multipart([json.dumps({"v": 1, "id": "no-args", "op": "ping"}).encode()])
    assert dealer.poll(30000)
    reply = json.loads(dealer.recv_multipart()[0])
    assert reply["id"] == "no-args" and reply["ok"] and reply["result"]["pong"] is True
    header, _ = next_result(sub)
    r = call(dealer, "f", "add_points", {"object": 9, "points": [[10.25, 20.75]], "labels": [1],
                                         "frame": header["frame"]})
    assert r["ok"], r
    r = call(dealer, "g", "add_box", {"object": 9, "box": [0.5, 1.5, 40.25, 30.75]})
    assert r["ok"], r
    assert call(dealer, "h", "remove_object", {"object": 9})["ok"]


def test_microsecond_timestamps_are_exact_for_javascript(sockets):
    _, sub = sockets
    header, _ = next_result(sub)
    for us, ns in (("capture_us", "capture_ns"), ("publish_us", "publish_ns"), ("publish_unix_us", "publish_unix_ns")):
        assert header[us] == header[ns] // 1000 and header[us] < 2**53, (us, header[us])
    assert header["publish_unix_ns"] > 2**53  # why the _us forms exist


def test_too_large_reply_has_null_id(daemon):
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(daemon.commands)
    try:
        dealer.send_multipart([json.dumps({"v": 1, "id": "big", "op": "ping"}).encode(), b"\0" * (17 << 20)])
        assert dealer.poll(30000)
        reply = json.loads(dealer.recv_multipart()[0])
        assert reply["ok"] is False and reply["error"]["code"] == "too_large" and reply["id"] is None
    finally:
        dealer.close(0)
        ctx.term()

