"""The tolerance contract's measurement (docs/engines.md): a fast tracker against the exact fp32 one on the same
frames of moving shapes, with a correction and a second object added on a past frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.synthetic import box_of_first_shape, moving_shapes_frame

# The contract of docs/engines.md, for every fast path.
MEAN_IOU = 0.98
AGREEMENT = 0.98  # share of (frame, object) pairs whose presence and box agree


@dataclass(frozen=True)
class Agreement:
    """How far a fast tracker's results are from the exact ones over one run."""

    mean_iou: float
    min_iou: float  # the lowest of any (frame, object) pair
    agreement: float  # share of (frame, object) pairs whose presence and box corners agree
    pairs: int

    @property
    def holds(self) -> bool:
        return self.mean_iou >= MEAN_IOU and self.agreement >= AGREEMENT

    def __str__(self) -> str:
        return f"mean IoU {self.mean_iou:.4f}, min per frame {self.min_iou:.4f}, agreement {self.agreement:.3f}"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def boxes_agree(a, b, h: int, w: int) -> bool:
    if a is None or b is None:
        return a is b
    tol = max(2, round(0.02 * max(h, w)))  # 2 % of the frame, at least 2 px
    return all(abs(p - q) <= tol for p, q in zip(a, b, strict=True))


def measure(exact, fast, frames: int = 100, h: int = 120, w: int = 160) -> Agreement:
    """Both trackers (fresh) over `frames` frames: a box on frame 0, a negative click at 30 %, a second object
    clicked on a frame two back at 50 %. Raises if they track different objects."""
    ious, agree = [], []
    for i in range(frames):
        frame = moving_shapes_frame(i, h, w)
        results = []
        for t in (exact, fast):
            r = t.step(frame)
            if i == 0:
                r = t.add_box(1, box_of_first_shape(0, h, w))
            elif i == frames * 3 // 10:
                r = t.add_points(1, [[w * 0.3, h * 0.4]], [0])
            elif i == frames // 2:
                r = t.add_points(2, [[w * 0.7, h * 0.6]], [1], frame_index=i - 2)
            results.append(r)
        ra, rb = results
        if set(ra.objects) != set(rb.objects):
            raise AssertionError(f"frame {i}: objects {sorted(ra.objects)} vs {sorted(rb.objects)}")
        for k, a in ra.objects.items():
            b = rb.objects[k]
            ious.append(iou(a.mask, b.mask))
            agree.append(a.present == b.present and boxes_agree(a.bbox, b.bbox, h, w))
    return Agreement(float(np.mean(ious)), float(np.min(ious)), float(np.mean(agree)), len(ious))
