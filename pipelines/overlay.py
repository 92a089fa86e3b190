"""Drawing tracked objects on a frame: each mask in its own colour with alpha, its contour, id and score."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Distinct, colour-blind-friendly colours (Okabe-Ito, then Tableau) cycled by object id.
PALETTE = [
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
    (204, 121, 167), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
]


@dataclass(frozen=True)
class OverlayObject:
    """What the overlay needs of one object: id, HxW bool mask, score."""

    obj_id: int
    mask: np.ndarray
    score: float


def color_for(obj_id: int) -> tuple[int, int, int]:
    return PALETTE[obj_id % len(PALETTE)]


def draw_overlay(image: np.ndarray, objects: list[OverlayObject], alpha: float = 0.45) -> np.ndarray:
    """A new RGB image with every object drawn on `image` (HxWx3 uint8); masks must match its size."""
    out = image.copy()
    h, w = image.shape[:2]
    for obj in objects:
        if obj.mask.shape != (h, w):
            raise ValueError(f"mask of object {obj.obj_id} is {obj.mask.shape}, frame is {(h, w)}")
        if not obj.mask.any():
            continue
        color = np.array(color_for(obj.obj_id), dtype=np.float32)
        region = out[obj.mask].astype(np.float32)
        out[obj.mask] = (region * (1 - alpha) + color * alpha).round().astype(np.uint8)
        contours, _ = cv2.findContours(obj.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color_for(obj.obj_id), thickness=max(1, min(h, w) // 240))
        ys, xs = np.nonzero(obj.mask)
        _label(out, f"{obj.obj_id} {obj.score:.2f}", int(xs.min()), int(ys.min()), color_for(obj.obj_id))
    return out


def _label(img: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    scale = max(0.35, min(img.shape[:2]) / 700)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y0 = max(0, y - th - base - 2)
    cv2.rectangle(img, (x, y0), (min(img.shape[1] - 1, x + tw + 4), y0 + th + base + 2), color, thickness=-1)
    cv2.putText(img, text, (x + 2, y0 + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
