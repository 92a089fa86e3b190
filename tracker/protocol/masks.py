"""Mask encodings on the wire (rle, bits, png, none): encoding, and checked decoding."""

from __future__ import annotations

import math
import struct

import numpy as np

from .base import ProtocolError

MASK_ENCODINGS = ("rle", "bits", "png", "none")


def encode_mask(mask: np.ndarray, encoding: str) -> bytes:
    """A bool HxW mask as the bytes of one frame in the given encoding."""
    if encoding == "rle":
        from pycocotools import mask as mask_util

        return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
    if encoding == "bits":
        return np.packbits(mask.reshape(-1)).tobytes()
    if encoding == "png":
        import cv2

        ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255)
        return buf.tobytes()
    if encoding == "none":
        return b""
    raise ValueError(f"unknown mask encoding {encoding!r}; one of {MASK_ENCODINGS}")


def decode_mask(data: bytes, encoding: str, height: int, width: int) -> np.ndarray:
    """The bool HxW mask in a frame; ProtocolError("bad_mask") if the bytes do not decode to that size."""
    if encoding == "rle":
        counts = rle_counts(data)
        if sum(counts) != height * width:
            raise ProtocolError("bad_mask", f"RLE covers {sum(counts)} pixels, size {height}x{width} has "
                                            f"{height * width}")
        from pycocotools import mask as mask_util

        return mask_util.decode({"size": [height, width], "counts": data}).astype(bool)
    if encoding == "bits":
        need = math.ceil(height * width / 8)
        if len(data) != need:
            raise ProtocolError("bad_mask", f"bits mask of {height}x{width} needs {need} bytes, got {len(data)}")
        return np.unpackbits(np.frombuffer(data, np.uint8))[: height * width].reshape(height, width).astype(bool)
    if encoding == "png":
        if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
            raise ProtocolError("bad_mask", "mask frame is not a PNG file")
        w, h = struct.unpack(">II", data[16:24])
        if (h, w) != (height, width):  # checked before decoding: no decompression bombs
            raise ProtocolError("bad_mask", f"PNG mask is {w}x{h}, expected {width}x{height}")
        import cv2

        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ProtocolError("bad_mask", "PNG mask does not decode")
        return img > 127
    raise ProtocolError("bad_mask", f"unknown mask encoding {encoding!r}")


def rle_counts(data: bytes) -> list[int]:
    """The run lengths of a COCO compressed RLE string, checked (so pycocotools never overruns)."""
    counts, i = [], 0
    try:
        while i < len(data):
            x, k, more = 0, 0, True
            while more:
                c = data[i] - 48
                if not 0 <= c < 64:
                    raise ValueError(f"byte {data[i]} is not an RLE character")
                x |= (c & 0x1F) << (5 * k)
                more = bool(c & 0x20)
                i += 1
                k += 1
                if not more and c & 0x10:
                    x |= -1 << (5 * k)
                if k > 7:
                    raise ValueError("run length too long")
            if len(counts) > 2:
                x += counts[-2]
            counts.append(x)
    except (IndexError, ValueError) as e:
        raise ProtocolError("bad_mask", f"mask frame is not a COCO RLE string: {e}") from e
    if any(c < 0 for c in counts):
        raise ProtocolError("bad_mask", "RLE has a negative run length")
    return counts
