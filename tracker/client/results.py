"""Results from the daemon's PUB socket: decoded masks, previews, the end of a stream."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import zmq

from .. import protocol as P
from ..protocol.curve import CurveClient

RECV_SLICE_S = 1.0  # an endless results() waits in slices of this, so that Ctrl-C is noticed between them


@dataclass(frozen=True)
class Result:
    """One published frame: its header (see docs/protocol.md) and each object's decoded mask."""

    header: dict
    masks: dict[int, np.ndarray]

    @property
    def frame(self) -> int:
        return self.header["frame"]

    @property
    def source(self) -> str:
        """"model" (the model ran on this frame) or "motion" (masks carried from `key_frame`)."""
        return self.header.get("source", "model")

    @property
    def key_frame(self) -> int | None:
        """The model frame these masks come from (this frame for a model result; None for an answer by motion
        while no model result was carried yet)."""
        return self.header.get("key_frame", self.frame)

    @property
    def revision(self) -> int:
        """How many answers of this frame came before this one: a later answer replaces an earlier one (the
        model's after motion's, a prompt's after the model's)."""
        return self.header.get("revision", 0)

    def latency_ms(self) -> float:
        """Capture to now, for a subscriber on the daemon's host (both use the monotonic clock)."""
        return (time.monotonic_ns() - self.header["capture_ns"]) / 1e6


class Answers:
    """The newest answer of each recent frame: a later answer of a frame replaces an earlier one (the model's after
    motion's, a prompt's revision after the model's), whatever order they come in."""

    def __init__(self, frames: int = 256):
        self._frames = frames  # frames remembered: older ones are forgotten, oldest first
        self._by_frame: OrderedDict[tuple[str, int], Result] = OrderedDict()

    def add(self, result: Result) -> bool:
        """Take a result; True when it is now its frame's newest answer."""
        key = (result.header["stream"], result.frame)
        old = self._by_frame.get(key)
        if old is not None and old.revision > result.revision:
            return False
        self._by_frame[key] = result
        self._by_frame.move_to_end(key)
        while len(self._by_frame) > self._frames:
            self._by_frame.popitem(last=False)
        return True

    def get(self, frame: int, stream: str | None = None) -> Result | None:
        """A frame's newest answer (of the only stream seen, or the one named)."""
        if stream is None:
            hits = [r for (s, f), r in self._by_frame.items() if f == frame]
            return hits[-1] if hits else None
        return self._by_frame.get((stream, frame))


@dataclass(frozen=True)
class StreamEnd:
    """The daemon's source ended (e.g. the end of a file); the daemon exits after sending this."""

    header: dict


class Subscriber:
    """Results (and previews, when asked) from the PUB socket, decoded."""

    def __init__(self, endpoint: str = P.DEFAULT_RESULTS, stream: str | None = None, previews: bool = False,
                 context: zmq.Context | None = None, curve: CurveClient | None = None):
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self._sock)
        self._sock.connect(endpoint)
        self.stream = stream
        for prefix in P.subscriptions(stream, previews):
            self._sock.setsockopt(zmq.SUBSCRIBE, prefix)
        self.gaps = 0  # results lost between daemon and this subscriber (seen as jumps in a stream's "seq")
        self._last_seq: dict[str, int] = {}  # per stream: each numbers its messages on its own

    def recv(self, timeout: float = 5.0) -> Result | StreamEnd | tuple[dict, bytes] | None:
        """The next message (Result, StreamEnd, or (header, jpeg) for a preview), or None after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000)):
                return None
            topic, header, *frames = self._sock.recv_multipart()
            if P.topic_matches(topic, self.stream):  # "results.cam" also receives "results.cam2"
                break
        h = json.loads(header)
        if h["type"] == "preview":
            return h, frames[0]
        if h["type"] == "end":
            return StreamEnd(h)
        last = self._last_seq.get(h["stream"])
        if last is not None and h["seq"] > last + 1:
            self.gaps += h["seq"] - last - 1
        self._last_seq[h["stream"]] = h["seq"]
        masks = {}
        for o in h["objects"]:
            if "mask" in o:
                m = o["mask"]
                masks[o["id"]] = P.decode_mask(frames[m["frame"]], m["encoding"], h["height"], h["width"])
        return Result(h, masks)

    def results(self, timeout: float | None = None):
        """Iterate over results (previews skipped) until the stream ends; with `timeout`, also once none arrived
        for that long. A frame may come again, revised (`Result.revision`); `Answers` keeps the newest of each."""
        while True:
            r = self.recv(RECV_SLICE_S if timeout is None else timeout)
            if isinstance(r, StreamEnd) or (r is None and timeout is not None):
                return
            if isinstance(r, Result):
                yield r

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
