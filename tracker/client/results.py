"""Results from the daemon's PUB socket: decoded masks, previews, the end of a stream."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import zmq

from .. import protocol as P
from ..protocol.curve import CurveClient


@dataclass(frozen=True)
class Result:
    """One published frame: its header (see docs/protocol.md) and each object's decoded mask."""

    header: dict
    masks: dict[int, np.ndarray]

    @property
    def frame(self) -> int:
        return self.header["frame"]

    def latency_ms(self) -> float:
        """Capture to now, for a subscriber on the daemon's host (both use the monotonic clock)."""
        return (time.monotonic_ns() - self.header["capture_ns"]) / 1e6


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

    def results(self, timeout: float = 5.0):
        """Iterate over results until the stream ends or none arrives within `timeout` s (previews skipped)."""
        while True:
            r = self.recv(timeout)
            if r is None or isinstance(r, StreamEnd):
                return
            if isinstance(r, Result):
                yield r

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
