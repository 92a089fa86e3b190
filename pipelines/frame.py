"""The frame type that crosses from pipelines/ to the tracker."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded video frame.

    index: position in the stream as it arrived (0, 1, 2, ...; a gap where frames were dropped for newer ones;
        continues across reconnects);
    pts_ns: presentation timestamp from the source in nanoseconds (None if the source has none);
    capture_ns: time.monotonic_ns() when the frame reached samtrack's sink;
    image: contiguous HxWx3 uint8 RGB array.
    """

    index: int
    pts_ns: int | None
    capture_ns: int
    image: np.ndarray = field(repr=False)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def rgb_from_buffer(data: bytes | memoryview, width: int, height: int) -> np.ndarray:
    """A contiguous HxWx3 array from a mapped RGB buffer whose rows may be padded (to 4 bytes in GStreamer)."""
    flat = np.frombuffer(data, dtype=np.uint8)
    stride = flat.size // height
    if stride < width * 3:
        raise ValueError(f"buffer of {flat.size} bytes is too small for {width}x{height} RGB")
    rows = flat[: stride * height].reshape(height, stride)[:, : width * 3]
    return np.ascontiguousarray(rows.reshape(height, width, 3))
