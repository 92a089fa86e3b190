"""Publishing each frame's result (and optional JPEG previews) on the PUB socket, never blocking."""

from __future__ import annotations

import numpy as np
import zmq

from pipelines.frame import Frame

from ..core.results import FrameResult
from ..protocol import messages

# Messages queued per subscriber before PUB drops for it: results are only useful fresh, so a slow
# subscriber loses old frames (it sees a gap in "seq") instead of slowing the tracker.
PUB_HWM = 20
PREVIEW_JPEG_QUALITY = 80  # enough to click on; a 640x480 preview stays around 30-50 kB


def frame_info(frame: Frame) -> messages.FrameInfo:
    return messages.FrameInfo(frame.index, frame.width, frame.height, frame.pts_ns, frame.capture_ns)


class Publisher:
    """Sends protocol messages for one stream; counts its own sequence numbers."""

    def __init__(self, socket: zmq.Socket, stream: str, mask_encoding: str = "rle", preview_every: int = 0):
        self.socket, self.stream = socket, stream
        self.mask_encoding = mask_encoding
        self.preview_every = preview_every  # send a JPEG of every Nth frame (0: never)
        self._seq = 0
        self._preview_seq = 0

    def publish(self, frame: Frame, result: FrameResult, timings_ms: dict[str, float], dropped: int) -> None:
        """Send one result message (and a preview when one is due)."""
        info = frame_info(frame)
        parts = messages.result_message(self.stream, self._seq, info, result, timings_ms, dropped, self.mask_encoding)
        self._seq += 1
        self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        if self.preview_every and result.frame_index % self.preview_every == 0:
            self._preview(frame, info, result.frame_index)

    def publish_end(self, last_frame: int | None, reason: str) -> None:
        """Tell subscribers that the stream is over (the daemon exits after this)."""
        self.socket.send_multipart(messages.end_message(self.stream, self._seq, last_frame, reason), flags=zmq.NOBLOCK)
        self._seq += 1

    def _preview(self, frame: Frame, info: messages.FrameInfo, index: int) -> None:
        import cv2

        ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(frame.image[..., ::-1]),
                                [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_JPEG_QUALITY])
        parts = messages.preview_message(self.stream, self._preview_seq, index, info, jpeg.tobytes())
        self._preview_seq += 1
        self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
