"""Requests to the daemon over a DEALER socket: prompts and queries with timeouts, typed remote errors."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import zmq

from .. import protocol as P
from ..errors import SamtrackError
from ..protocol.curve import CurveClient


class RemoteError(SamtrackError):
    """The daemon answered with an error; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Client:
    """Requests over a DEALER socket. On a timeout the socket is closed and recreated, so a late reply
    can never be mistaken for the answer to the next request. `stream` names the stream every request is
    for (needed on a daemon with several; None: the daemon's only one, or all of them for ping/stats)."""

    def __init__(self, endpoint: str = P.DEFAULT_COMMANDS, timeout: float = 10.0,
                 context: zmq.Context | None = None, curve: CurveClient | None = None, stream: str | None = None):
        self.endpoint, self.timeout, self.curve, self.stream = endpoint, timeout, curve, stream
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._sock = self._connect()
        self.reply_frames: list[bytes] = []  # binary frames after the last reply

    def _connect(self) -> zmq.Socket:
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.apply(s)
        s.connect(self.endpoint)
        return s

    def request(self, op: str, args: P.NoArgs | dict | None = None, frames: list[bytes] = (),
                timeout: float | None = None):
        """Send one request (args as the op's schema in tracker.protocol, or a JSON object) and return its
        result; RemoteError for an error reply, TimeoutError if none. Binary frames that came after the reply
        (export_state's) are in `reply_frames`."""
        rid = next(self._ids)
        fields = dict(args or {}) if isinstance(args, dict) else args.model_dump(exclude_unset=True) if args else {}
        if self.stream is not None:
            fields.setdefault("stream", self.stream)
        self._sock.send_multipart([P.request(rid, op, fields), *frames])
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000)):
                self._sock.close(0)
                self._sock = self._connect()
                raise TimeoutError(f"no reply to {op} from {self.endpoint} within {self.timeout:.1f} s")
            reply_frames = self._sock.recv_multipart()
            reply = json.loads(reply_frames[0])
            if reply.get("id") != rid:  # a stale reply to an earlier request: skip it
                continue
            self.reply_frames = reply_frames[1:]
            if not reply["ok"]:
                raise RemoteError(reply["error"]["code"], reply["error"]["message"])
            return reply["result"]

    def ping(self) -> dict:
        return self.request("ping")

    def add_points(self, obj: int, points, labels, frame: int | str = "latest", clear_old_points: bool = True):
        return self.request("add_points", P.PointsArgs.model_construct(
            object=obj, points=_points(points), labels=[int(v) for v in labels], frame=frame,
            clear_old_points=clear_old_points))

    def add_box(self, obj: int, box, frame: int | str = "latest", points=None, labels=None):
        """A box, optionally with clicks (points and labels together)."""
        args = P.BoxArgs.model_construct(object=obj, box=[float(v) for v in box], frame=frame)
        if points is not None or labels is not None:
            args = P.BoxArgs.model_construct(object=obj, box=args.box, frame=frame, points=_points(points or []),
                                             labels=[int(v) for v in labels or []])
        return self.request("add_box", args)

    def add_mask(self, obj: int, mask: np.ndarray, frame: int | str = "latest", encoding: str = "rle"):
        h, w = mask.shape
        return self.request("add_mask", P.MaskArgs.model_construct(object=obj, encoding=encoding, size=[h, w],
                                                                   frame=frame),
                            frames=[P.encode_mask(mask.astype(bool), encoding)])

    def remove_object(self, obj: int):
        return self.request("remove_object", P.ObjectArgs.model_construct(object=obj))

    def reset(self):
        return self.request("reset")

    def list_objects(self):
        return self.request("list_objects")

    def stats(self):
        return self.request("stats")

    def add_concept(self, text: str, every: int | None = None, every_s: float | None = None,
                    threshold: float | None = None, max_objects: int | None = None) -> dict:
        """Find every `text` with the daemon's detector (every `every` frames or `every_s` seconds; unset fields
        take the daemon's defaults); the concept as the daemon holds it."""
        given = {"every": every, "every_s": every_s, "threshold": threshold, "max_objects": max_objects}
        return self.request("add_concept", {"text": text, **{k: v for k, v in given.items() if v is not None}})

    def remove_concept(self, text: str) -> dict:
        """The concept and every object it found removed; the concepts left."""
        return self.request("remove_concept", {"text": text})

    def list_concepts(self) -> dict:
        return self.request("list_concepts")

    def export_state(self) -> tuple[dict, bytes]:
        """The stream's state (objects and their conditioning memories) as bytes, with what it holds."""
        result = self.request("export_state")
        return result, self.reply_frames[0]

    def import_state(self, data: bytes) -> dict:
        """Another daemon's exported state in place of this stream's objects (same model and weights)."""
        return self.request("import_state", frames=[data])

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def listening(endpoint: str, timeout: float, socket_type: int = zmq.DEALER) -> bool:
    """Whether something accepts a connection at `endpoint` within `timeout` s (a daemon binds its sockets once
    its model is loaded). A connection, not a reply: a daemon busy with a long step still counts."""
    ctx = zmq.Context.instance()
    s = ctx.socket(socket_type)
    s.setsockopt(zmq.LINGER, 0)
    monitor = s.get_monitor_socket(zmq.EVENT_CONNECTED)
    try:
        s.connect(endpoint)
        return bool(monitor.poll(int(timeout * 1000)))
    finally:
        s.disable_monitor()
        monitor.close(0)
        s.close(0)


def _points(points) -> list[list[float]]:
    return [[float(v) for v in p] for p in points]
