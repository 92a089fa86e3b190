"""Publishing each frame's results (and optional JPEG previews) on the PUB socket, protocol v1."""

from __future__ import annotations

import json
import time

import numpy as np
import zmq

from pipelines.frame import Frame

from .protocol import PREVIEW_TOPIC, PROTOCOL_VERSION, RESULTS_TOPIC, encode_mask
from .results import FrameResult, ObjectResult

# Messages queued per subscriber before PUB drops for it: results are only useful fresh, so a slow
# subscriber loses old frames (it sees a gap in "seq") instead of slowing the tracker.
PUB_HWM = 20
PREVIEW_JPEG_QUALITY = 80  # enough to click on; a 640x480 preview stays around 30-50 kB


def object_summary(o: ObjectResult) -> dict:
    return {"id": o.obj_id, "present": bool(o.present), "score": round(float(o.score), 4),
            "bbox": list(o.bbox) if o.bbox is not None else None, "area": int(o.area)}


class Publisher:
    """Encodes results into protocol messages and sends them without ever blocking."""

    def __init__(self, socket: zmq.Socket, stream: str, mask_encoding: str = "rle", preview_every: int = 0):
        self.socket, self.stream = socket, stream
        self.mask_encoding = mask_encoding
        self.preview_every = preview_every  # send a JPEG of every Nth frame (0: never)
        self._topic = f"{RESULTS_TOPIC}.{stream}".encode()
        self._preview_topic = f"{PREVIEW_TOPIC}.{stream}".encode()
        self._seq = 0
        self._preview_seq = 0

    def publish(self, frame: Frame, result: FrameResult, stages_ms: dict[str, float], dropped: int) -> int:
        """Send one result message; return its size in bytes."""
        masks, objects = [], []
        for o in result.objects.values():
            d = object_summary(o)
            if self.mask_encoding != "none":
                d["mask"] = {"encoding": self.mask_encoding, "frame": len(masks)}
                masks.append(encode_mask(o.mask, self.mask_encoding))
            objects.append(d)
        header = {
            "v": PROTOCOL_VERSION, "type": "result", "stream": self.stream, "seq": self._seq,
            "frame": result.frame_index, "source_index": frame.index,
            "width": frame.width, "height": frame.height, "pts_ns": frame.pts_ns,
            "capture_ns": frame.capture_ns, "publish_ns": time.monotonic_ns(), "publish_unix_ns": time.time_ns(),
            "timings_ms": stages_ms, "dropped": dropped, "objects": objects,
        }
        self._seq += 1
        parts = [self._topic, json.dumps(header).encode(), *masks]
        self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        if self.preview_every and result.frame_index % self.preview_every == 0:
            self._preview(frame, result.frame_index)
        return sum(len(p) for p in parts)

    def publish_end(self, last_frame: int | None, reason: str) -> None:
        """Tell subscribers that the stream is over (the daemon exits after this)."""
        header = {"v": PROTOCOL_VERSION, "type": "end", "stream": self.stream, "seq": self._seq,
                  "frame": last_frame, "reason": reason, "publish_unix_ns": time.time_ns()}
        self._seq += 1
        self.socket.send_multipart([self._topic, json.dumps(header).encode()], flags=zmq.NOBLOCK)

    def _preview(self, frame: Frame, index: int) -> None:
        import cv2

        ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(frame.image[..., ::-1]),
                                [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_JPEG_QUALITY])
        header = {"v": PROTOCOL_VERSION, "type": "preview", "stream": self.stream, "seq": self._preview_seq,
                  "frame": index, "width": frame.width, "height": frame.height, "capture_ns": frame.capture_ns,
                  "encoding": "jpeg"}
        self._preview_seq += 1
        self.socket.send_multipart([self._preview_topic, json.dumps(header).encode(), jpeg.tobytes()],
                                   flags=zmq.NOBLOCK, copy=False)
