"""An object's motion from its point tracks: a similarity (shift, rotation, uniform scale) fitted with RANSAC,
a shift alone when too few points agree, or nothing (the last motion held) when no point is left."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

# Fewer tracked points than this: no similarity is fitted (four parameters from three or four noisy points tilt
# and scale the mask at random); the median shift of the survivors moves it instead.
MIN_FIT_POINTS = 6
RANSAC_PX = 1.5  # a point agrees with the fitted motion when it lands this close to where the motion puts it
# A similarity agreed on by fewer of the points than this is not trusted (the points follow two things: an
# occluder and the object, or a deforming object): the median shift of the agreeing points is used instead.
MIN_AGREEMENT = 0.4


class How(Enum):
    """How an object's mask was moved on a frame."""

    SIMILARITY = "similarity"  # shift, rotation and scale from the object's own points
    SHIFT = "shift"  # too few (or disagreeing) points for a similarity: their median shift, rotation/scale kept
    HELD = "held"  # no point left: the last motion kept


@dataclass(frozen=True)
class Fit:
    """A fitted motion: a 3x3 matrix from the anchor frame's coordinates to the current frame's, and the points
    that agree with it."""

    matrix: np.ndarray
    how: How
    agree: np.ndarray  # bool per point


def similarity(origin: np.ndarray, current: np.ndarray, last: np.ndarray) -> Fit:
    """The motion that takes points `origin` [N, 2] to `current` [N, 2]; `last` (3x3) is what is kept (its
    rotation and scale, or all of it) when the points cannot say."""
    n = len(origin)
    if n >= MIN_FIT_POINTS:
        m, inliers = cv2.estimateAffinePartial2D(origin, current, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                                 maxIters=200, confidence=0.995, refineIters=10)
        if m is not None:
            agree = inliers.reshape(-1).astype(bool)
            if agree.sum() >= max(MIN_FIT_POINTS, MIN_AGREEMENT * n):
                return Fit(np.vstack([m, [0.0, 0.0, 1.0]]), How.SIMILARITY, agree)
    if n == 0:
        return Fit(last, How.HELD, np.zeros(0, bool))
    # The shift that moves the origin points, through the last motion's rotation and scale, onto their current
    # positions (median: robust to a few points that follow something else).
    moved = origin @ last[:2, :2].T
    shift = np.median(current - moved, axis=0)
    m = last.copy()
    m[:2, 2] = shift
    return Fit(m, How.SHIFT, np.ones(n, bool))


def scaled(matrix: np.ndarray, scale: float) -> np.ndarray:
    """A 3x3 motion in coordinates `scale` times larger (motion-image coordinates -> frame coordinates)."""
    if scale == 1.0:
        return matrix
    s = np.diag([scale, scale, 1.0])
    return s @ matrix @ np.linalg.inv(s)
