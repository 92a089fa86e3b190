"""Helpers for GStreamer tests: encoded test files and the colours to check them by."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import numpy as np

# Encoders and containers the tests write (H.264/MP4, H.264/Matroska, VP8/WebM, MJPEG/AVI).
CODECS = {
    "h264.mp4": "x264enc speed-preset=ultrafast ! h264parse ! mp4mux",
    "h264.mkv": "x264enc speed-preset=ultrafast ! h264parse ! matroskamux",
    "vp8.webm": "vp8enc deadline=1 ! webmmux",
    "mjpeg.avi": "jpegenc ! avimux",
}


# In-gamut colours (no clipping differences between RGB and YUV paths), one per block of a 4x4 grid.
BLOCK_COLOURS = np.array([
    (200, 60, 60), (60, 180, 60), (60, 60, 200), (200, 200, 60),
    (60, 200, 200), (200, 60, 200), (120, 120, 120), (220, 220, 220),
    (40, 40, 40), (160, 100, 60), (60, 100, 160), (100, 160, 60),
    (180, 140, 200), (140, 200, 180), (200, 180, 140), (90, 90, 160),
], dtype=np.uint8)


def block_image(width: int = 322, height: int = 242) -> np.ndarray:
    """A 4x4 grid of flat colour blocks: decoding errors of geometry or colour show up in block means."""
    img = np.zeros((height, width, 3), np.uint8)
    for k, colour in enumerate(BLOCK_COLOURS):
        r, c = divmod(k, 4)
        img[r * height // 4:(r + 1) * height // 4, c * width // 4:(c + 1) * width // 4] = colour
    return img


def block_means(img: np.ndarray, inset: int = 8) -> np.ndarray:
    """Mean colour of each block's interior (edges excluded: codecs blur them)."""
    h, w = img.shape[:2]
    out = []
    for k in range(16):
        r, c = divmod(k, 4)
        block = img[r * h // 4 + inset:(r + 1) * h // 4 - inset, c * w // 4 + inset:(c + 1) * w // 4 - inset]
        out.append(block.reshape(-1, 3).mean(0))
    return np.array(out)


def encode_test_file(path: Path, encoder: str, frames: int = 12, width: int = 322, height: int = 242) -> Path:
    """A video of `block_image` frames, written by gst-launch-1.0 (not by samtrack's sinks)."""
    raw = path.with_suffix(".rgb")
    raw.write_bytes(np.concatenate([block_image(width, height).reshape(-1)] * frames).tobytes())
    desc = (f"filesrc location={raw} ! rawvideoparse width={width} height={height} format=rgb "
            f"framerate=15/1 plane-strides=<{width * 3}> ! videoconvert ! {encoder} ! filesink location={path}")
    subprocess.run(["gst-launch-1.0", "-q", *shlex.split(desc)], check=True, timeout=60)
    raw.unlink()
    return path
