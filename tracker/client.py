"""Python client for the samtrack daemon: prompts with timeouts, and decoded results as numpy masks."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass

import numpy as np
import zmq

from . import protocol as P
from .errors import SamtrackError
from .security import CurveClient


class RemoteError(SamtrackError):
    """The daemon answered with an error; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Client:
    """Requests over a DEALER socket. On a timeout the socket is closed and recreated, so a late reply
    can never be mistaken for the answer to the next request."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5556", timeout: float = 10.0,
                 context: zmq.Context | None = None, curve: CurveClient | None = None):
        self.endpoint, self.timeout, self.curve = endpoint, timeout, curve
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._sock = self._connect()

    def _connect(self) -> zmq.Socket:
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.apply(s)
        s.connect(self.endpoint)
        return s

    def request(self, op: str, args: dict | None = None, frames: list[bytes] = (), timeout: float | None = None):
        """Send one request and return its result; RemoteError for an error reply, TimeoutError if none."""
        rid = next(self._ids)
        self._sock.send_multipart([P.request(rid, op, args), *frames])
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000)):
                self._sock.close(0)
                self._sock = self._connect()
                raise TimeoutError(f"no reply to {op} from {self.endpoint} within {self.timeout:.1f} s")
            reply = json.loads(self._sock.recv_multipart()[-1])
            if reply.get("id") != rid:  # a stale reply to an earlier request: skip it
                continue
            if not reply["ok"]:
                raise RemoteError(reply["error"]["code"], reply["error"]["message"])
            return reply["result"]

    def ping(self) -> dict:
        return self.request("ping")

    def add_points(self, obj: int, points, labels, frame: int | str = "latest", clear_old_points: bool = True):
        return self.request("add_points", {"object": obj, "points": [list(map(float, p)) for p in points],
                                           "labels": [int(v) for v in labels], "frame": frame,
                                           "clear_old_points": clear_old_points})

    def add_box(self, obj: int, box, frame: int | str = "latest"):
        return self.request("add_box", {"object": obj, "box": [float(v) for v in box], "frame": frame})

    def add_mask(self, obj: int, mask: np.ndarray, frame: int | str = "latest", encoding: str = "rle"):
        h, w = mask.shape
        return self.request("add_mask", {"object": obj, "encoding": encoding, "size": [h, w], "frame": frame},
                            frames=[P.encode_mask(mask.astype(bool), encoding)])

    def remove_object(self, obj: int):
        return self.request("remove_object", {"object": obj})

    def reset(self):
        return self.request("reset")

    def list_objects(self):
        return self.request("list_objects")

    def stats(self):
        return self.request("stats")

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", stream: str | None = None, previews: bool = False,
                 context: zmq.Context | None = None, curve: CurveClient | None = None):
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self._sock)
        self._sock.connect(endpoint)
        suffix = f".{stream}" if stream else ""
        self._sock.setsockopt(zmq.SUBSCRIBE, f"{P.RESULTS_TOPIC}{suffix}".encode())
        if previews:
            self._sock.setsockopt(zmq.SUBSCRIBE, f"{P.PREVIEW_TOPIC}{suffix}".encode())
        self.gaps = 0  # results lost between daemon and this subscriber (seen as jumps in "seq")
        self._last_seq: int | None = None

    def recv(self, timeout: float = 5.0) -> Result | StreamEnd | tuple[dict, bytes] | None:
        """The next message (Result, StreamEnd, or (header, jpeg) for a preview), or None after `timeout` s."""
        if not self._sock.poll(int(timeout * 1000)):
            return None
        topic, header, *frames = self._sock.recv_multipart()
        h = json.loads(header)
        if h["type"] == "preview":
            return h, frames[0]
        if h["type"] == "end":
            return StreamEnd(h)
        if self._last_seq is not None and h["seq"] > self._last_seq + 1:
            self.gaps += h["seq"] - self._last_seq - 1
        self._last_seq = h["seq"]
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


def to_detections(result: Result):
    """The result as supervision.Detections (xyxy, mask, tracker_id, confidence); needs `supervision`."""
    try:
        import supervision as sv
    except ImportError as e:
        raise ImportError("to_detections needs the supervision package: pip install supervision") from e
    objs = [o for o in result.header["objects"] if o["bbox"] is not None and o["id"] in result.masks]
    if not objs:
        return sv.Detections.empty()
    return sv.Detections(
        xyxy=np.array([o["bbox"] for o in objs], dtype=np.float32),
        mask=np.stack([result.masks[o["id"]] for o in objs]),
        confidence=np.array([1 / (1 + np.exp(-o["score"])) for o in objs], dtype=np.float32),
        tracker_id=np.array([o["id"] for o in objs]),
    )
