"""Overlaps of masks, and the one-to-one matching of detections to tracked objects by those overlaps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    """A bool mask with its bounding box (rows y0:y1, columns x0:x1, empty when area is 0) and its area."""

    mask: np.ndarray
    y0: int
    y1: int
    x0: int
    x1: int
    area: int

    @classmethod
    def of(cls, mask: np.ndarray) -> Region:
        m = np.asarray(mask, dtype=bool)
        if m.ndim != 2:
            raise ValueError(f"a mask is HxW, got shape {m.shape}")
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if rows.size == 0:
            return cls(m, 0, 0, 0, 0, 0)
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(m, y0, y1, x0, x1, int(np.count_nonzero(m[y0:y1, x0:x1])))


def _overlap_box(a: Region, b: Region) -> tuple[int, int, int, int] | None:
    y0, y1, x0, x1 = max(a.y0, b.y0), min(a.y1, b.y1), max(a.x0, b.x0), min(a.x1, b.x1)
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def intersection(a: Region, b: Region) -> int:
    """Pixels in both masks."""
    if a.mask.shape != b.mask.shape:
        raise ValueError(f"masks of different sizes: {a.mask.shape} and {b.mask.shape}")
    box = _overlap_box(a, b)
    if box is None:
        return 0
    y0, y1, x0, x1 = box
    return int(np.count_nonzero(a.mask[y0:y1, x0:x1] & b.mask[y0:y1, x0:x1]))


def iou(a: Region, b: Region) -> float:
    """Intersection over union; 0 when both are empty."""
    inter = intersection(a, b)
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def iou_matrix(rows: Sequence[Region], cols: Sequence[Region]) -> np.ndarray:
    """IoU of every row mask with every column mask, shape (len(rows), len(cols))."""
    out = np.zeros((len(rows), len(cols)))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[i, j] = iou(r, c)
    return out


def assign(ious: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one pairs (row, column) with the largest total IoU among pairs of IoU min_iou or more (Hungarian
    assignment); a row or column in no such pair is unmatched. Sorted by row."""
    if ious.size == 0:
        return []
    # imported here: scipy.optimize costs every daemon ~0.5 s of CPU at start, and only a detector's streams match
    from scipy.optimize import linear_sum_assignment

    allowed = np.where(ious >= min_iou, ious, 0.0)
    rows, cols = linear_sum_assignment(allowed, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if ious[r, c] >= min_iou]


def covered_fraction(region: Region, others: Sequence[Region]) -> float:
    """The share of `region`'s pixels under any of `others` (1.0 for an empty region: nothing of it is new)."""
    if region.area == 0:
        return 1.0
    under = np.zeros((region.y1 - region.y0, region.x1 - region.x0), dtype=bool)
    for o in others:
        if o.mask.shape != region.mask.shape:
            raise ValueError(f"masks of different sizes: {region.mask.shape} and {o.mask.shape}")
        box = _overlap_box(region, o)
        if box is not None:
            y0, y1, x0, x1 = box
            under[y0 - region.y0:y1 - region.y0, x0 - region.x0:x1 - region.x0] |= o.mask[y0:y1, x0:x1]
    own = region.mask[region.y0:region.y1, region.x0:region.x1]
    return int(np.count_nonzero(under & own)) / region.area
