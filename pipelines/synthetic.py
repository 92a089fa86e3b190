"""A synthetic moving-shapes video as numpy frames (no GStreamer): demos, benchmarks and tests."""

from __future__ import annotations

import numpy as np


def moving_shapes(n: int, height: int = 96, width: int = 120, seed: int = 0) -> list[np.ndarray]:
    """n RGB uint8 frames: a noisy gradient background, a red box moving right-down, a blue disc moving left."""
    return [moving_shapes_frame(i, height, width, seed) for i in range(n)]


def moving_shapes_frame(i: int, height: int = 96, width: int = 120, seed: int = 0) -> np.ndarray:
    """Frame i of `moving_shapes`, computed on its own so long streams need no list in memory."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 60, (height, width, 3)) + np.linspace(0, 120, width)[None, :, None]
    f = bg.astype(np.uint8)
    bw, bh, r = max(4, width // 5), max(4, height * 7 // 24), max(2, height // 8)
    x0 = 8 + (2 * i) % max(1, width - bw - 16)
    y0 = 12 + i % max(1, height - bh - 12)
    f[y0:y0 + bh, x0:x0 + bw] = (220, 40, 40)
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = width - 20 - (3 * i) % max(1, width - 40), height // 2 + 10 * height // 96
    f[(xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2] = (40, 60, 230)
    return f


def box_of_first_shape(i: int, height: int = 96, width: int = 120) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the red box in frame i, for prompting it."""
    bw, bh = max(4, width // 5), max(4, height * 7 // 24)
    x0 = 8 + (2 * i) % max(1, width - bw - 16)
    y0 = 12 + i % max(1, height - bh - 12)
    return x0, y0, x0 + bw, y0 + bh
