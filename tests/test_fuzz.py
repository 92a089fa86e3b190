"""Thousands of malformed and random requests: each gets a typed error reply, the daemon keeps
publishing, and its memory stays flat."""

from __future__ import annotations

import json
import time

import psutil
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_helpers import start_daemon

CODES = {"bad_json", "bad_request", "bad_frames", "too_large", "unsupported_version", "unknown_op",
         "bad_prompt", "bad_mask", "frame_out_of_window", "unknown_object"}
BATCH = 20  # requests in flight at once (the daemon serves them between frames)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)

VALID = {
    "add_points": {"object": 1, "points": [[10.0, 10.0]], "labels": [1]},
    "add_box": {"object": 1, "box": [1.0, 1.0, 20.0, 20.0]},
    "add_mask": {"object": 1, "encoding": "rle", "size": [120, 160]},
    "remove_object": {"object": 1},
    "ping": {},
}
BAD_VALUES = [None, "x", [], {}, True, -1, 2**40, 1e300, [[1, 2, 3]], [["a", "b"]]]


@st.composite
def broken_request(draw) -> list[bytes]:
    """A nearly valid request with exactly one thing wrong."""
    op = draw(st.sampled_from(sorted(VALID)))
    args = dict(VALID[op])
    env = {"v": 1, "id": draw(st.integers(0, 10**6)), "op": op, "args": args}
    frames = [b"x"] if op == "add_mask" else []
    kind = draw(st.sampled_from(["drop", "extra", "type", "nonfinite", "outside", "many", "version", "op",
                                 "frames", "envelope_extra", "mask_bytes", "labels"]))
    if kind == "drop" and args:
        del args[draw(st.sampled_from(sorted(args)))]
    elif kind == "extra" or (kind == "drop" and not args):
        args["surprise"] = draw(json_values)
    elif kind == "type" and args:
        args[draw(st.sampled_from(sorted(args)))] = draw(st.sampled_from(BAD_VALUES))
    elif kind == "nonfinite":
        env["args"] = {**VALID["add_points"], "points": [[draw(st.sampled_from(["NaN", "Infinity"])), 3.0]]}
        env["op"], frames = "add_points", []
        text = json.dumps(env).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
        return [text.encode()]
    elif kind == "outside":
        x = draw(st.one_of(st.floats(161, 1e12), st.floats(-1e12, -0.001)))
        env["op"], env["args"], frames = "add_points", {**VALID["add_points"], "points": [[x, 5.0]]}, []
    elif kind == "many":
        n = draw(st.integers(65, 200))
        env["op"], frames = "add_points", []
        env["args"] = {"object": 1, "points": [[1.0, 1.0]] * n, "labels": [1] * n}
    elif kind == "version":
        env["v"] = draw(st.integers().filter(lambda v: v != 1))
    elif kind == "op":
        env["op"] = draw(st.text(max_size=12).filter(lambda s: s not in VALID and s not in
                                                     ("reset", "list_objects", "stats")))
    elif kind == "frames":
        frames = frames[:-1] if frames else [b"extra"]
    elif kind == "envelope_extra":
        env["extra"] = 1
    elif kind == "mask_bytes":
        env["op"], env["args"] = "add_mask", dict(VALID["add_mask"])
        frames = [draw(st.binary(min_size=1, max_size=64))]
    elif kind == "labels":
        env["op"], frames = "add_points", []
        env["args"] = {**VALID["add_points"], "labels": [draw(st.sampled_from([2, -1, "1", 0.5, None]))]}
    if kind == "type" and not args:
        env["args"] = draw(json_values.filter(lambda v: not isinstance(v, dict)))
    return [json.dumps(env).encode(), *frames]


garbage = st.one_of(
    st.lists(st.binary(max_size=64), min_size=1, max_size=3),
    json_values.map(lambda v: [json.dumps(v).encode()]),
)
# Each message tagged with its origin: a broken request must be refused; garbage may be valid by chance.
tagged = st.one_of(broken_request().map(lambda m: ("broken", m)), garbage.map(lambda m: ("garbage", m)))


@pytest.fixture(scope="module")
def daemon():
    # a slow camera: between its frames the daemon's turns serve requests every FRAME_WAIT_S instead of waiting for
    # model steps (at 15 fps the steps held each batch up); 5 fps still publishes the frames the checks count
    d = start_daemon(source="test:?width=160&height=120&fps=5")
    yield d
    assert d.stop() == 0


@pytest.fixture(scope="module")
def dealer(daemon):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(daemon.commands)
    yield s
    s.close(0)
    ctx.term()


def _exchange(dealer, messages: list[list[bytes]]) -> list[dict]:
    for m in messages:
        dealer.send_multipart(m)
    replies, deadline = [], time.monotonic() + 60
    while len(replies) < len(messages) and time.monotonic() < deadline:
        if dealer.poll(1000):
            replies.append(json.loads(dealer.recv_multipart()[-1]))
    assert len(replies) == len(messages), f"{len(messages) - len(replies)} requests got no reply"
    return replies


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(tagged, min_size=BATCH, max_size=BATCH))
def test_fuzzed_requests_get_typed_errors(dealer, messages):
    replies = _exchange(dealer, [m for _, m in messages])
    for (origin, m), r in zip(messages, replies, strict=True):
        if origin == "garbage" and r.get("ok") is True:  # random garbage can be a valid request by chance
            continue
        assert r["ok"] is False and r["error"]["code"] in CODES, (origin, m, r)
        assert isinstance(r["error"]["message"], str) and r["error"]["message"]


@pytest.mark.slow
def test_daemon_survives_fuzzing_with_flat_memory(daemon, dealer):
    proc = psutil.Process(daemon.proc.pid)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"results.test")
    sub.connect(daemon.results)
    try:
        test_fuzzed_requests_get_typed_errors(dealer)  # warm-up round (allocator, caches)
        rss0 = proc.memory_info().rss
        for _ in range(3):
            test_fuzzed_requests_get_typed_errors(dealer)
        growth = proc.memory_info().rss - rss0
        big = [json.dumps({"v": 1, "id": 1, "op": "ping"}).encode(), b"\0" * (17 << 20)]
        assert _exchange(dealer, [big])[0]["error"]["code"] == "too_large"
        frames, deadline = [], time.monotonic() + 30
        while len(frames) < 3 and time.monotonic() < deadline:
            if sub.poll(1000):
                frames.append(json.loads(sub.recv_multipart()[1])["frame"])
        assert len(frames) == 3 and frames == sorted(frames), "the daemon stopped publishing"
        assert growth < 40 * 2**20, f"daemon RSS grew {growth / 2**20:.1f} MiB over 6,000 bad requests"
        assert daemon.proc.poll() is None, "the daemon exited under fuzzing"
    finally:
        sub.close(0)
        ctx.term()
