"""Carrying the newest key frame's masks to the frames after it.

Frames are added in order (`add`); a model result seeds the carrier (`seed`): corners inside each object's mask
on that key frame are followed frame to frame up to the newest frame (catching up on the frames kept since), and
from then on with every frame added. `carry()` gives the newest frame's masks: each key mask moved by its object's
fitted motion (tracker/motion/fit.py), score and presence carried. Single-threaded: the daemon runs it on a thread
of its own, the offline runner inline."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..core.results import FrameResult, ObjectResult
from .dense import DenseMask
from .fit import How, scaled, similarity
from .tracks import MotionImage, find_corners, follow, motion_image
from .warp import Moved, box_of, move_mask

# Frames kept for catching up: a model result for a frame this many frames old can still be carried to the newest
# one (8 s at 15 fps: a step at 1024 px on a 2-core CPU takes 3-6 s). Each is a grey image at the motion scale
# (0.3 MB at 640x480, 38 MB in all); catching up costs about a millisecond a frame and object.
RING_FRAMES = 128
# Frames larger than this (either side) are tracked shrunk to it: point tracking's cost and the ring's memory grow
# with pixels, and 640 px keeps the boundary within about a pixel at 1080p.
MOTION_MAX_SIDE = 640
# Once fewer than this share of an object's points survive, new corners are found where its mask is now (the
# carried mask) and tracked from there, the motion so far kept: long carries would otherwise run out of points.
REANCHOR_SHARE = 0.5
# An object whose points agree with its fitted similarity less than this (a share of them) is deforming: from then
# until the next key frame its mask follows dense flow instead. Rigid objects measured >= 0.83 at their 10th
# percentile (rotating and scaling ones), the `deform` scene's 0.73 at its median (bench motion).
RIGID_SHARE = 0.8
DEFORM_FITS = 2  # ... on this many frames in a row: one frame where several points fail is no deformation


@dataclass
class _Carried:
    """One object between key frames."""

    obj_id: int
    score: float
    mask: np.ndarray  # on the key frame, HxW bool
    bbox: tuple[int, int, int, int] | None
    small: np.ndarray  # the key mask at the motion scale (re-anchoring reads it)
    base: np.ndarray  # 3x3, key frame -> anchor frame (motion-image coordinates)
    origin: np.ndarray  # [N, 2] the points on the anchor frame
    points: np.ndarray  # [N, 2] the same points on the newest frame
    seeded: int  # points found at the anchor
    motion: np.ndarray  # 3x3, anchor -> newest frame
    how: How = How.SIMILARITY
    dense: DenseMask | None = None  # once it deforms: its mask along dense flow (tracker/motion/dense.py)
    disagreed: int = 0  # fits in a row its points disagreed with (RIGID_SHARE)

    @property
    def total(self) -> np.ndarray:
        """Key frame -> newest frame, motion-image coordinates."""
        return self.motion @ self.base


@dataclass(frozen=True)
class CarryStats:
    """How the newest frame's masks were moved: objects per kind of motion."""

    similarity: int = 0
    shift: int = 0
    held: int = 0
    dense: int = 0  # deforming objects, along dense flow


class Carrier:
    """Masks of the newest seeded key frame, carried to the newest frame added."""

    def __init__(self, width: int, height: int, ring: int = RING_FRAMES):
        if ring < 1:
            raise ValueError("the carrier keeps at least one frame")
        self.width, self.height = width, height
        self.scale = min(1.0, MOTION_MAX_SIDE / max(width, height))
        self._ring: deque[MotionImage] = deque(maxlen=ring)
        self._objects: dict[int, _Carried] = {}
        self.key_frame: int | None = None  # the model frame the carried masks come from
        self.key_capture_ns: int | None = None
        self.held_seeds = 0  # seeds whose key frame was no longer kept (their masks carried unmoved)

    @property
    def carried(self) -> list[int]:
        """Ids of the objects carried."""
        return list(self._objects)

    @property
    def newest(self) -> int | None:
        """Number of the newest frame added."""
        return self._ring[-1].number if self._ring else None

    def add(self, number: int, capture_ns: int, rgb: np.ndarray) -> None:
        """The next frame (numbers increase; frames of another size are refused)."""
        if rgb.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame of {rgb.shape[1]}x{rgb.shape[0]} px, the carrier's are "
                             f"{self.width}x{self.height}")
        if self._ring and number <= self._ring[-1].number:
            raise ValueError(f"frame {number} after frame {self._ring[-1].number}: frames come in order")
        image = motion_image(number, capture_ns, rgb, self.scale)
        if self._ring and self._objects:
            self._advance(self._ring[-1], image)
        self._ring.append(image)

    def seed(self, result: FrameResult, capture_ns: int | None = None) -> bool:
        """A model result (its frame captured at `capture_ns`, when known): its masks replace the carried ones,
        followed from its frame to the newest one; True when taken. A frame not kept any more (older than the ring,
        or not added) seeds the masks unmoved at the newest frame; masks of another size (the camera changed its
        size since) are not taken."""
        if any((o.height, o.width) != (self.height, self.width) for o in result.objects.values()):
            return False
        kept = {im.number: i for i, im in enumerate(self._ring)}
        at = kept.get(result.frame_index)
        self.key_frame = result.frame_index
        key = self._ring[at] if at is not None else None
        self.key_capture_ns = key.capture_ns if key is not None else capture_ns
        if at is None:
            self.held_seeds += 1
        self._objects = {}
        for o in result.objects.values():
            mask = o.mask
            small = mask if self.scale == 1.0 else _shrink(mask, key.grey.shape if key else self._small_shape())
            bbox = o.bbox if self.scale == 1.0 else box_of(small)
            points = find_corners(key.grey, small, bbox) if key is not None else np.zeros((0, 2), np.float32)
            self._objects[o.obj_id] = _Carried(o.obj_id, o.score, mask, o.bbox, small, np.eye(3), points,
                                               points.copy(), len(points), np.eye(3),
                                               How.SIMILARITY if len(points) else How.HELD)
        if at is not None:
            for prev, cur in zip(list(self._ring)[at:], list(self._ring)[at + 1:]):
                self._advance(prev, cur)
        return True

    def carry(self) -> FrameResult:
        """The newest frame's masks: the key masks moved (source "motion", key_frame the key frame)."""
        if self.newest is None:
            raise ValueError("no frame added yet")
        objects = {}
        for c in self._objects.values():
            if c.dense is not None:
                mask = c.dense.mask(self.height, self.width)
                moved = Moved(np.packbits(mask.reshape(-1)), box_of(mask), int(np.count_nonzero(mask)))
            else:
                moved = move_mask(c.mask, c.bbox, scaled(c.total, 1.0 / self.scale))
            objects[c.obj_id] = ObjectResult(c.obj_id, c.score, moved.bbox, moved.area, moved.packed, self.height,
                                             self.width, None)
        return FrameResult(self.newest, objects, source="motion", key_frame=self.key_frame)

    def stats(self) -> CarryStats:
        counts = {h: sum(c.how is h and c.dense is None for c in self._objects.values()) for h in How}
        return CarryStats(counts[How.SIMILARITY], counts[How.SHIFT], counts[How.HELD],
                          sum(c.dense is not None for c in self._objects.values()))

    def forget(self, obj_ids: set[int] | None = None) -> None:
        """Stop carrying some objects (None: all of them): removed, or reset, while the model is busy."""
        self._objects = {} if obj_ids is None else {i: c for i, c in self._objects.items() if i not in obj_ids}

    # ---- internals ----------------------------------------------------------------------
    def _small_shape(self) -> tuple[int, int]:
        return max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale))

    def _advance(self, prev: MotionImage, cur: MotionImage) -> None:
        """Every object's points from `prev` to `cur` (one tracking call for all), then each object's motion."""
        objs = list(self._objects.values())
        counts = [len(c.points) for c in objs]
        found, ok = follow(prev, cur, np.concatenate([c.points for c in objs]) if sum(counts) else
                           np.zeros((0, 2), np.float32))
        start = 0
        for c, n in zip(objs, counts):
            keep = ok[start:start + n]
            c.points, c.origin = found[start:start + n][keep], c.origin[keep]
            start += n
            if c.dense is not None:
                c.dense.advance(prev.grey, cur.grey)
                continue
            before = c.total
            fit = similarity(c.origin, c.points, c.motion)
            c.disagreed = c.disagreed + 1 if fit.how is How.SIMILARITY and fit.agree.mean() < RIGID_SHARE else 0
            if c.disagreed >= DEFORM_FITS:  # it deforms: dense flow from here
                c.dense = DenseMask(self._small_mask(c, before))
                c.dense.advance(prev.grey, cur.grey)
                continue
            c.motion, c.how = fit.matrix, fit.how
            if fit.how is How.SIMILARITY:  # points that disagree follow something else (an edge, an occluder)
                c.points, c.origin = c.points[fit.agree], c.origin[fit.agree]
            if len(c.points) < REANCHOR_SHARE * c.seeded:
                self._reanchor(c, cur)

    def _small_mask(self, c: _Carried, total: np.ndarray) -> np.ndarray:
        """The key mask moved by `total`, at the motion scale (bool)."""
        here = move_mask(c.small, box_of(c.small), total)
        h, w = c.small.shape
        return np.unpackbits(here.packed, count=h * w).reshape(h, w).view(bool)

    def _reanchor(self, c: _Carried, cur: MotionImage) -> None:
        """New points for an object where its carried mask is on `cur`; its motion so far becomes the base."""
        total = c.total
        here = self._small_mask(c, total)
        points = find_corners(cur.grey, here, box_of(here))
        if len(points) <= len(c.points):
            return  # nothing better where the mask is now: keep the survivors
        c.base, c.motion = total, np.eye(3)
        c.origin, c.points, c.seeded = points, points.copy(), len(points)


def _shrink(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask at another size (nearest), for finding corners on the shrunk image."""
    import cv2

    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
