"""Prompt checks and their conversion to the model's inputs, as Meta's predictor converts them."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import PromptError
from .bank import PointPrompt

# Clicks kept for one object on one frame, added up over corrections that keep the old ones: a prompt is
# a handful of clicks, and each costs every later decoder pass on that frame.
MAX_FRAME_POINTS = 64


def _as_float_array(value, name: str, shape_hint: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise PromptError(f"{name} must be numbers shaped {shape_hint}: {e}") from e
    if not np.all(np.isfinite(arr)):
        raise PromptError(f"{name} contains NaN or infinity: {arr.tolist()}")
    return arr


def check_object_id(obj_id) -> int:
    """An object id as an int; PromptError for anything but an integer."""
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
        raise PromptError(f"object ids must be integers, got {obj_id!r}")
    return int(obj_id)


def check_points(points, labels, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Points as float32 [N, 2] (x, y) and labels as int32 [N] (1 positive, 0 negative)."""
    pts = _as_float_array(points, "points", "[N, 2] (x, y)")
    if pts.ndim == 1 and pts.shape == (2,):
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise PromptError(f"points must have shape [N, 2] with N >= 1, got {list(pts.shape)}")
    try:
        lab = np.asarray(labels).reshape(-1) if np.ndim(labels) == 0 else np.asarray(labels)
    except (TypeError, ValueError) as e:
        raise PromptError(f"labels must be a list of 1 (positive) / 0 (negative): {e}") from e
    if lab.ndim != 1 or lab.shape[0] != pts.shape[0]:
        raise PromptError(f"need one label per point: {pts.shape[0]} points, labels {np.asarray(labels).tolist()}")
    if lab.dtype.kind not in "biuf" or not np.all(np.isin(lab, (0, 1))):
        raise PromptError(f"labels must be 1 (positive) or 0 (negative), got {lab.tolist()}")
    _check_inside(pts, width, height, "point")
    return pts.astype(np.float32), lab.astype(np.int32)


def check_box(box, width: int, height: int) -> np.ndarray:
    """Box as float32 [4] (x0, y0, x1, y1) with x0 < x1, y0 < y1, inside the frame."""
    b = _as_float_array(box, "box", "[x0, y0, x1, y1]").reshape(-1)
    if b.shape != (4,):
        raise PromptError(f"box must be [x0, y0, x1, y1], got {b.tolist()}")
    if not (b[0] < b[2] and b[1] < b[3]):
        raise PromptError(f"box must have x0 < x1 and y0 < y1, got {b.tolist()}")
    _check_inside(b.reshape(2, 2), width, height, "box corner")
    return b.astype(np.float32)


def _check_inside(pts: np.ndarray, width: int, height: int, what: str) -> None:
    bad = [(float(x), float(y)) for x, y in pts if not (0 <= x <= width and 0 <= y <= height)]
    if bad:
        raise PromptError(
            f"{what} {bad[0]} is outside the frame: x must be in [0, {width}], y in [0, {height}] (pixels)"
        )


def check_mask(mask, width: int, height: int) -> np.ndarray:
    """Mask as a bool [H, W] array at frame resolution with at least one pixel set."""
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape != (height, width):
        raise PromptError(f"mask must have the frame's shape ({height}, {width}), got {m.shape}")
    if m.dtype != np.bool_:
        if not np.issubdtype(m.dtype, np.number) or not np.all(np.isin(m, (0, 1))):
            raise PromptError(f"mask must be boolean or 0/1, got dtype {m.dtype}")
        m = m.astype(bool)
    if not m.any():
        raise PromptError("mask is empty: set at least one pixel, or use remove_object to drop the object")
    return m


def to_point_prompt(
    points: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
    width: int, height: int, image_size: int, device: torch.device,
) -> PointPrompt:
    """Points (and box corners, labels 2 and 3, first) scaled to the model's image size like Meta."""
    pts = torch.tensor(points, dtype=torch.float32) if points is not None else torch.zeros(0, 2)
    lab = torch.tensor(labels, dtype=torch.int32) if labels is not None else torch.zeros(0, dtype=torch.int32)
    pts, lab = pts.unsqueeze(0), lab.unsqueeze(0)
    if box is not None:
        box_t = torch.tensor(box, dtype=torch.float32).reshape(1, 2, 2)
        pts = torch.cat([box_t, pts], dim=1)
        lab = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), lab], dim=1)
    pts = pts / torch.tensor([width, height])
    pts = pts * image_size
    return PointPrompt(pts.to(device), lab.to(device))


def to_mask_input(mask: np.ndarray, image_size: int, device: torch.device) -> torch.Tensor:
    """A frame-resolution bool mask as Meta's add_new_mask feeds it: [1, 1, S, S] float 0/1."""
    m = torch.from_numpy(mask)[None, None].float().to(device)
    if m.shape[-2:] != (image_size, image_size):
        m = torch.nn.functional.interpolate(
            m, size=(image_size, image_size), align_corners=False, mode="bilinear", antialias=True
        )
        m = (m >= 0.5).float()
    return m

