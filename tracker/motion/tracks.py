"""Point tracks between frames: corners found inside an object's mask, followed from frame to frame by pyramidal
Lucas-Kanade, and kept only where tracking back lands where they started (the forward-backward check)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Pixels each point is matched over: wide enough to lock onto texture under 8-10 px moves, small enough to stay
# inside objects of a few dozen pixels. Cost grows with its area: 21 px cost twice as much for the same IoU
# (bench motion, docs/benchmarks.md).
LK_WINDOW = (15, 15)
LK_LEVELS = 3  # pyramid levels: moves of up to ~2^3 window radii a frame are followed
# Iterations per level and the step (px) that ends them: 10 iterations gave the IoU of 20 at half the cost.
LK_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 10, 0.03)
# A point tracked forward then back must land this close to where it began, or it is dropped: occluded points and
# points sliding along an edge fail it.
FB_MAX_PX = 1.0
# Corners seeded per object: 30 fit a similarity as well as 80 did on the scenes, and tracking cost is per point.
MAX_CORNERS = 30
CORNER_QUALITY = 0.01  # relative to the object's strongest corner: weak texture still gives points
CORNER_SPACING_PX = 5  # no two corners closer: spread over the object, not clustered on one blob
# Corners this close to the mask's edge see the background in their window: seeded from the eroded mask (when
# anything is left of it) so that they follow the object, not what is behind it.
EDGE_PX = 3
# Pixels of a mask's box searched for corners at most: a larger box (a whole-frame mask) is searched shrunk, which
# found as good points at a fifth of the cost (a search costs with the box's area; 7.5 ms for a 640x480 box).
CORNER_AREA = 40_000


@dataclass(frozen=True)
class MotionImage:
    """A frame as point tracking reads it: grey, at the motion scale."""

    number: int
    capture_ns: int
    grey: np.ndarray


def motion_image(number: int, capture_ns: int, rgb: np.ndarray, scale: float) -> MotionImage:
    """An HxWx3 RGB frame as a MotionImage; scale < 1 shrinks it first (point tracking on large frames)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale != 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return MotionImage(number, capture_ns, grey)


def find_corners(grey: np.ndarray, mask: np.ndarray, bbox: tuple[int, int, int, int] | None) -> np.ndarray:
    """Up to MAX_CORNERS corners [N, 2] (x, y float32) inside a bool mask of grey's size, whose box (inclusive) is
    `bbox` (None: empty). A large box is searched shrunk: thirty corners need no more pixels than CORNER_AREA."""
    if bbox is None:
        return np.zeros((0, 2), np.float32)
    x0, y0, x1, y1 = bbox[0], bbox[1], bbox[2] + 1, bbox[3] + 1
    roi, patch = mask[y0:y1, x0:x1].astype(np.uint8), grey[y0:y1, x0:x1]
    shrink = max(1, int(np.ceil(np.sqrt(roi.size / CORNER_AREA))))
    if shrink > 1:
        size = (max(1, roi.shape[1] // shrink), max(1, roi.shape[0] // shrink))
        patch = cv2.resize(patch, size, interpolation=cv2.INTER_AREA)
        roi = cv2.resize(roi, size, interpolation=cv2.INTER_NEAREST)
    inner = cv2.erode(roi, np.ones((2 * EDGE_PX + 1,) * 2, np.uint8))
    if inner.any():
        roi = inner
    found = cv2.goodFeaturesToTrack(patch, MAX_CORNERS, CORNER_QUALITY, CORNER_SPACING_PX, mask=roi, blockSize=5)
    if found is None:
        return np.zeros((0, 2), np.float32)
    return found.reshape(-1, 2) * shrink + (shrink - 1) / 2 + np.array([x0, y0], np.float32)


def follow(prev: MotionImage, cur: MotionImage, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points [N, 2] of `prev` found in `cur`: their positions and whether each passed the forward-backward check."""
    if len(points) == 0:
        return points, np.zeros(0, bool)
    p0 = points.reshape(-1, 1, 2).astype(np.float32)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev.grey, cur.grey, p0, None, winSize=LK_WINDOW,
                                          maxLevel=LK_LEVELS, criteria=LK_CRITERIA)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(cur.grey, prev.grey, p1, None, winSize=LK_WINDOW,
                                            maxLevel=LK_LEVELS, criteria=LK_CRITERIA)
    ok = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1)
    ok &= np.linalg.norm((back - p0).reshape(-1, 2), axis=1) < FB_MAX_PX
    h, w = cur.grey.shape
    p1 = p1.reshape(-1, 2)
    ok &= (p1[:, 0] >= 0) & (p1[:, 1] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] <= h - 1)
    return p1, ok
