"""A key frame's mask moved by a motion: warped where it lands only (its box), summarized as the wire needs it."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Moved:
    """A moved mask at frame size: packed bits (np.packbits of the HxW mask), box (inclusive) and area."""

    packed: np.ndarray
    bbox: tuple[int, int, int, int] | None
    area: int


def box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), inclusive, of a bool mask; None when empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def move_mask(mask: np.ndarray, bbox: tuple[int, int, int, int] | None, matrix: np.ndarray) -> Moved:
    """`mask` (HxW bool, its box `bbox`) moved by the 3x3 `matrix` (frame coordinates), at the same size.

    Warped bilinearly as 0/255 and thresholded at half: a boundary lands on the nearest pixel of where the motion
    puts it (a shift by whole pixels is an exact copy)."""
    h, w = mask.shape
    out = np.zeros((h, w), np.uint8)
    if bbox is None:
        return Moved(np.packbits(out.reshape(-1)), None, 0)
    x0, y0, x1, y1 = bbox
    sx0, sy0 = max(0, x0 - 1), max(0, y0 - 1)  # a pixel of background around the source: its edge interpolates
    sx1, sy1 = min(w, x1 + 2), min(h, y1 + 2)
    corners = np.array([[sx0, sy0, 1], [sx1, sy0, 1], [sx0, sy1, 1], [sx1, sy1, 1]], np.float64) @ matrix[:2].T
    dx0, dy0 = max(0, int(np.floor(corners[:, 0].min())) - 1), max(0, int(np.floor(corners[:, 1].min())) - 1)
    dx1, dy1 = min(w, int(np.ceil(corners[:, 0].max())) + 2), min(h, int(np.ceil(corners[:, 1].max())) + 2)
    if dx0 >= dx1 or dy0 >= dy1:  # moved out of the frame
        return Moved(np.packbits(out.reshape(-1)), None, 0)
    # Source ROI coordinates -> destination ROI coordinates.
    to_roi = np.array([[1, 0, -dx0], [0, 1, -dy0], [0, 0, 1]], np.float64) @ matrix @ \
        np.array([[1, 0, sx0], [0, 1, sy0], [0, 0, 1]], np.float64)
    src = mask[sy0:sy1, sx0:sx1].astype(np.uint8) * 255
    warped = cv2.warpAffine(src, to_roi[:2], (dx1 - dx0, dy1 - dy0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    roi = warped > 127
    area = int(np.count_nonzero(roi))
    if area == 0:
        return Moved(np.packbits(out.reshape(-1)), None, 0)
    out[dy0:dy1, dx0:dx1] = roi
    bx0, by0, bx1, by1 = box_of(roi)
    return Moved(np.packbits(out.reshape(-1)), (bx0 + dx0, by0 + dy0, bx1 + dx0, by1 + dy0), area)
