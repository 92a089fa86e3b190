"""Lifecycle events of the objects concepts find, from the daemon's PUB socket (topic events.<stream>)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import zmq

from .. import protocol as P
from ..protocol.curve import CurveClient


@dataclass(frozen=True)
class Event:
    """What happened to one object a concept found (docs/protocol.md): `kind` is appeared, confirmed, lost, refound,
    retracted or removed; `score` the detection's (null when none applies)."""

    kind: str
    stream: str
    frame: int
    object: int
    label: str
    score: float | None


class Events:
    """Lifecycle events of one stream (or of every stream), in the order the daemon published them."""

    def __init__(self, endpoint: str = P.DEFAULT_RESULTS, stream: str | None = None,
                 context: zmq.Context | None = None, curve: CurveClient | None = None):
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self._sock)
        self._sock.connect(endpoint)
        self._topic = f"{P.EVENTS_TOPIC}.{stream or ''}".encode()  # a prefix: events.cam also gets events.cam2
        self._exact = stream is not None
        self._sock.setsockopt(zmq.SUBSCRIBE, self._topic)

    def recv(self, timeout: float = 5.0) -> Event | None:
        """The next event, or None after `timeout` s (0: None unless one has arrived)."""
        deadline = time.monotonic() + timeout
        while True:  # timeout 0: what has arrived already, without waiting
            if not self._sock.poll(int(max(0.0, deadline - time.monotonic()) * 1000)):
                return None
            topic, header, *_ = self._sock.recv_multipart()
            if not self._exact or topic == self._topic:
                h = json.loads(header)
                return Event(h["kind"], h["stream"], h["frame"], h["object"], h["label"], h["score"])

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> Events:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
