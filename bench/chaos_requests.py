"""The chaos benchmark's request traffic: malformed requests of every kind, each with the error code the
protocol promises for it, and valid prompts, removals and resets whose effect is checked (by `Checks`)
in the results that follow. Clients are real DEALER and REQ sockets."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import zmq

from tracker import protocol as P

REPLY_TIMEOUT_S = 30.0  # what samtrack's own clients wait for a prompt (docs/protocol.md: past-frame prompts)
BAD_TIMEOUT_S = 10.0  # a malformed request's reply comes at the next turn; longer only across a restart
MAX_OBJECTS = 3  # per stream: new objects stop here, prompts correct existing ones (bounded tracking cost)
PAST_MAX = 8  # a past-frame prompt names at most this many frames before the newest result seen (window: 16)


@dataclass
class Sent:
    """One request and what came of it."""

    kind: str  # "valid:<op>" or "bad:<mutation>"
    stream: str | None
    sent_mono: float
    latency_s: float | None = None  # None: no reply within the timeout
    code: str | None = None  # None: ok
    expected: tuple[str, ...] = ()  # the codes right for a malformed request (empty: any documented one)


class Channel:
    """One client socket (DEALER or REQ). A timeout closes and reopens it: a REQ socket is stuck otherwise,
    and a late reply is never read as the next one's."""

    def __init__(self, ctx: zmq.Context, endpoint: str, kind: int):
        self.ctx, self.endpoint, self.kind = ctx, endpoint, kind
        self.sock = self._open()

    def _open(self) -> zmq.Socket:
        s = self.ctx.socket(self.kind)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.endpoint)
        return s

    def call(self, frames: list[bytes], timeout_s: float) -> dict | None:
        """Send one request; its reply as JSON (a reply that is not JSON is returned as {"unreadable": ...}),
        or None after timeout_s."""
        self.sock.send_multipart(frames)
        if not self.sock.poll(int(timeout_s * 1000)):
            self.sock.close(0)
            self.sock = self._open()
            return None
        last = self.sock.recv_multipart()[-1]
        try:
            return json.loads(last)
        except ValueError:
            return {"unreadable": last[:200].decode("latin-1")}

    def close(self) -> None:
        self.sock.close(0)


def _request(rid: int, op: str, args: dict, **envelope) -> bytes:
    return json.dumps({"v": 1, "id": rid, "op": op, "args": args, **envelope}).encode()


def _mask_bits(width: int, height: int, box: tuple[int, int, int, int]) -> bytes:
    m = np.zeros((height, width), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return P.encode_mask(m, "bits")


class Malformed:
    """Malformed requests, one fault each on an otherwise valid request, with the codes right for each."""

    def __init__(self, streams: list[str], width: int, height: int, rng: random.Random,
                 newest: Callable[[str], int | None]):
        self.streams, self.w, self.h, self.rng, self.newest = streams, width, height, rng, newest

    def make(self, rid: int, dealer: bool) -> tuple[str, list[bytes], tuple[str, ...]]:
        """One malformed request for a DEALER (else a REQ) socket: name, frames, the codes that are right
        (empty: any documented code but `internal`)."""
        r, s = self.rng, self.rng.choice(self.streams)
        # a prompt's values are checked after its frame: a stream with no frame yet (just restarted) says so
        prompt_fault = ("bad_prompt",) if self.newest(s) is not None else ("bad_prompt", "frame_out_of_window")
        ok = {"object": 900 + r.randrange(5), "points": [[self.w / 2, self.h / 2]], "labels": [1], "stream": s}

        def req(args: dict = ok, op: str = "add_points", **env) -> bytes:
            return _request(rid, op, args, **env)

        kinds: list[tuple[str, Callable[[], tuple[list[bytes], str | tuple[str, ...] | None]]]] = [
            ("random_bytes", lambda: ([r.randbytes(r.randrange(1, 300)) or b"x"], None)),
            ("not_json", lambda: ([b'{"v": 1, "id": 1, "op": '], "bad_json")),
            ("not_an_object", lambda: ([b"[1, 2, 3]"], "bad_request")),
            ("no_id", lambda: ([json.dumps({"v": 1, "op": "ping", "args": {}}).encode()], "bad_request")),
            ("version_2", lambda: ([req(v=2)], "unsupported_version")),
            ("unknown_op", lambda: ([req(op="explode")], "unknown_op")),
            ("unknown_field", lambda: ([req({**ok, "colour": "red"})], "bad_request")),
            ("wrong_type", lambda: ([req({**ok, "object": "one"})], "bad_request")),
            ("not_finite", lambda: ([req({**ok, "points": [[float("nan"), 1.0]]})], "bad_request")),
            ("too_many_points", lambda: ([req({**ok, "points": [[1, 1]] * 65, "labels": [1] * 65})], "bad_request")),
            ("labels_mismatch", lambda: ([req({**ok, "labels": [1, 0]})], "bad_request")),
            ("point_outside", lambda: ([req({**ok, "points": [[self.w * 10, -5]]})], prompt_fault)),
            ("label_7", lambda: ([req({**ok, "labels": [7]})], prompt_fault)),
            ("inverted_box", lambda: ([req({"object": 902, "box": [50, 50, 10, 10], "stream": s}, op="add_box")],
                                      prompt_fault)),
            ("future_frame", lambda: ([req({**ok, "frame": 10**9})], "frame_out_of_window")),
            ("extra_frame", lambda: ([req(), b"surplus"], "bad_frames")),
            ("mask_missing", lambda: ([req(self._mask_args(s), op="add_mask")], "bad_frames")),
            ("mask_garbage", lambda: ([req(self._mask_args(s), op="add_mask"), b"\x01\x02"], "bad_mask")),
            ("remove_unknown", lambda: ([req({"object": 123456, "stream": s}, op="remove_object")], "unknown_object")),
            ("unknown_stream", lambda: ([req({**ok, "stream": "no-such-camera"})], "unknown_stream")),
            ("no_stream", lambda: ([req({k: v for k, v in ok.items() if k != "stream"})], "stream_required")),
            # DEALER: an empty frame is a REQ envelope with nothing after it; REQ: an empty request is not JSON
            ("empty", lambda: ([b""], "bad_frames" if dealer else "bad_json")),
        ]
        name, build = r.choice(kinds)
        if r.random() < 0.02:  # rare: 16 MiB and a byte, refused before parsing (and costly to send)
            name, build = "oversized", lambda: ([b" " * (P.MAX_REQUEST_BYTES + 1)], "too_large")
        frames, expected = build()
        return name, frames, (expected,) if isinstance(expected, str) else expected or ()

    def _mask_args(self, stream: str) -> dict:
        return {"object": 901, "encoding": "bits", "size": [self.h, self.w], "stream": stream}


@dataclass
class Check:
    """A prompt's promise: the first result of `stream` whose masks come from a model frame after `after` (its
    key_frame; same daemon instance) lists `object` (the harness removes no object, and resets no stream, that a
    waiting check is about)."""

    stream: str
    object: int
    after: int
    instance: int
    outcome: bool | None = None  # None: not yet seen


@dataclass
class Checks:
    """Pending and settled checks, resolved by the results subscriber."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[Check] = field(default_factory=list)
    passed: int = 0
    failed: list[Check] = field(default_factory=list)

    def add(self, check: Check) -> None:
        with self.lock:
            self.pending.append(check)

    def on_result(self, instance: int, stream: str, key_frame: int, objects: set[int]) -> None:
        with self.lock:
            keep = []
            for c in self.pending:
                if c.instance == instance and c.stream == stream and key_frame > c.after:
                    c.outcome = c.object in objects
                    self.passed += c.outcome
                    if not c.outcome:
                        self.failed.append(c)
                else:
                    keep.append(c)
            self.pending = keep

    def waiting(self, stream: str | None = None, obj: int | None = None) -> int:
        with self.lock:
            return sum(1 for c in self.pending if (stream is None or c.stream == stream)
                       and (obj is None or c.object == obj))


class Valid:
    """Valid requests, one at a time across all clients (the lock), so that the expected objects of each
    stream are known: prompts (latest and past frames, points, boxes, masks), removals and resets."""

    def __init__(self, streams: list[str], width: int, height: int, rng: random.Random, checks: Checks,
                 newest: Callable[[str], int | None], first: Callable[[str], int | None],
                 instance: Callable[[], int]):
        self.streams, self.w, self.h, self.rng, self.checks = streams, width, height, rng, checks
        # newest and first result seen per stream (this instance): a past frame is named only between the two
        self.newest, self.first, self.instance = newest, first, instance
        self.lock = threading.Lock()  # held for a request and its reply; the harness holds it to kill the daemon
        self.objects: dict[str, set[int]] = {s: set() for s in streams}
        self.mismatches: list[str] = []  # removal/reset replies that disagree with the expected objects

    def send(self, channel: Channel, rid: int) -> Sent | None:
        """One valid request and its reply; None while no stream has a frame to prompt on (a restart)."""
        with self.lock:
            ready = [s for s in self.streams if self.newest(s) is not None]
            if not ready:
                return None
            s = self.rng.choice(ready)
            op, args, frames = self._choose(s)
            sent = Sent(f"valid:{op}", s, time.monotonic())
            reply = channel.call([_request(rid, op.split(":")[0], args), *frames], REPLY_TIMEOUT_S)
            if reply is None:
                return sent
            sent.latency_s = time.monotonic() - sent.sent_mono
            if not reply.get("ok"):
                sent.code = reply.get("error", {}).get("code", "unreadable")
                return sent
            self._expect(s, op, args, reply["result"])
            return sent

    def _choose(self, s: str) -> tuple[str, dict, list[bytes]]:
        r, have = self.rng, self.objects[s]
        settled = [o for o in have if self.checks.waiting(s, o) == 0]
        roll = r.random()
        if roll < 0.03 and have and self.checks.waiting(s) == 0:
            return "reset", {"stream": s}, []
        if roll < 0.12 and settled:
            return "remove_object", {"object": r.choice(settled), "stream": s}, []
        obj = r.randrange(1, 100) if len(have) < MAX_OBJECTS else r.choice(sorted(have))
        newest, first = self.newest(s), self.first(s)  # None: the daemon was restarted since `s` was chosen
        frame: int | str = "latest"
        if r.random() < 0.4 and newest is not None and first is not None and newest - first > PAST_MAX:
            frame = newest - r.randrange(1, PAST_MAX + 1)
        x0, y0 = r.randrange(0, self.w // 2), r.randrange(0, self.h // 2)
        box = (x0, y0, x0 + r.randrange(8, self.w // 2), y0 + r.randrange(8, self.h // 2))
        kind = r.random()
        if kind < 0.5:
            pts = [[r.uniform(0, self.w), r.uniform(0, self.h)] for _ in range(r.randrange(1, 4))]
            labels = [1] + [r.randrange(2) for _ in pts[1:]]
            return "add_points", {"object": obj, "points": pts, "labels": labels, "frame": frame, "stream": s}, []
        if kind < 0.85:
            return "add_box", {"object": obj, "box": list(box), "frame": frame, "stream": s}, []
        args = {"object": obj, "encoding": "bits", "size": [self.h, self.w], "frame": frame, "stream": s}
        return "add_mask", args, [_mask_bits(self.w, self.h, box)]

    def _expect(self, s: str, op: str, args: dict, result: dict) -> None:
        if op == "reset":
            self.objects[s] = set()
            if result.get("objects") != []:
                self.mismatches.append(f"reset on {s} left {result.get('objects')}")
        elif op == "remove_object":
            self.objects[s].discard(args["object"])
            if sorted(result.get("objects", [])) != sorted(self.objects[s]):
                self.mismatches.append(f"remove on {s}: daemon has {result.get('objects')}, "
                                       f"expected {sorted(self.objects[s])}")
        else:
            self.objects[s].add(args["object"])
            self.checks.add(Check(s, args["object"], result["latest"], self.instance()))


def tally(sent: list[Sent]) -> Counter:
    """Replies per error code ("ok" for success, "no reply" when none came)."""
    return Counter("no reply" if x.latency_s is None else x.code or "ok" for x in sent)


def tally_kinds(sent: list[Sent]) -> Counter:
    """Requests per kind (the op of a valid one, the fault of a malformed one)."""
    return Counter(x.kind.split(":", 1)[1] for x in sent)
