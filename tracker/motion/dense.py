"""A deforming object's mask pulled along dense optical flow, frame by frame (OpenCV's DIS), over its own region only.

Sparse tracks and one similarity follow a rigid object almost exactly; an object whose points disagree with any
single similarity (it bends, waves, stretches) is followed better by dense flow over the first frames
(`samtrack bench motion`: the `deform` scene), so the carrier switches such an object to this."""

from __future__ import annotations

import cv2
import numpy as np

MARGIN_PX = 16  # flow is computed this far around the mask too: its edge may move out of its old box
# DIS's fastest preset: a few ms for a whole 640x480 frame, well under a millisecond for one object's region.
PRESET = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST


class DenseMask:
    """A soft mask (0..1, float32, the motion image's size) moved along the flow from each frame to the next."""

    def __init__(self, mask: np.ndarray):
        self.soft = mask.astype(np.float32)
        self._dis = cv2.DISOpticalFlow_create(PRESET)

    def advance(self, prev: np.ndarray, cur: np.ndarray) -> None:
        """Move the mask from grey image `prev` to grey image `cur` (same size as the mask)."""
        ys, xs = np.nonzero(self.soft > 0.5)
        if xs.size == 0:
            return
        h, w = self.soft.shape
        x0, x1 = max(0, xs.min() - MARGIN_PX), min(w, xs.max() + MARGIN_PX + 1)
        y0, y1 = max(0, ys.min() - MARGIN_PX), min(h, ys.max() + MARGIN_PX + 1)
        # Flow from the new frame back to the old one: each new pixel looks up where it came from.
        flow = self._dis.calc(np.ascontiguousarray(cur[y0:y1, x0:x1]), np.ascontiguousarray(prev[y0:y1, x0:x1]),
                              None)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        moved = cv2.remap(self.soft, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        self.soft = np.zeros_like(self.soft)
        self.soft[y0:y1, x0:x1] = moved

    def mask(self, height: int, width: int) -> np.ndarray:
        """The mask as bool at a frame's size (enlarged when the motion image was shrunk)."""
        soft = self.soft
        if soft.shape != (height, width):
            soft = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
        return soft > 0.5
