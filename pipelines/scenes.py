"""Synthetic scenes whose true per-object masks are known, frame by frame: a textured background (panned by the
camera in `pan`) and textured objects that translate, rotate and scale, pass behind one another, deform, or (in
`traffic`) enter the frame, cross each other's paths and leave.

They measure masks carried between key frames (`samtrack bench motion`) and a concept's matching and lifecycles
(`samtrack bench concepts`) against truth, where SAM 2's masks with random weights mean nothing, and serve as a
fake camera (`scene:NAME`, pipelines/scene_source.py). Every frame is a pure function of (scene, size, seed,
frame number)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SCENES = ("translate", "pan", "rotate_scale", "occlusion", "deform", "crowd", "traffic")
WHOLE_SCENES = SCENES[:-1]  # the scenes whose objects are in every frame, whole (traffic's enter and leave)
PASS_IDS = 100  # in traffic an object's every pass across the frame is a new object: id obj_id + PASS_IDS * pass
CAMERA_PAN = (4.0, 2.0)  # px per frame the background moves in `pan` (the probe's camera)
PAN_MARGIN = 160  # background canvas beyond the frame on each side: the camera bounces within it


@dataclass(frozen=True)
class SceneFrame:
    """One frame of a scene and each object's true mask (its visible pixels)."""

    image: np.ndarray  # HxWx3 uint8 RGB
    masks: dict[int, np.ndarray]  # object id -> HxW bool


@dataclass(frozen=True)
class Pose:
    """Where an object is on one frame: centre (px), rotation (radians), scale, and its boundary's wave."""

    cx: float
    cy: float
    angle: float = 0.0
    scale: float = 1.0
    wave: float = 0.0  # phase of the radial deformation (deforming objects only)


@dataclass(frozen=True)
class SceneObject:
    """An object drawn in its own coordinates: an ellipse of radii (rx, ry) with a texture of its own."""

    obj_id: int
    rx: float
    ry: float
    velocity: tuple[float, float]  # px per frame (bouncing off the frame's edges)
    spin: float = 0.0  # radians per frame
    pulse: float = 0.0  # scale amplitude: scale = 1 + pulse * sin(2 pi i / PULSE_PERIOD)
    deform: float = 0.0  # radial amplitude of the boundary's wave (deform)
    start: tuple[float, float] = (0.3, 0.3)  # centre on frame 0, as fractions of the frame
    lane: tuple[float, float] = (0.0, 1.0)  # the band of the frame (fractions of its height) the object stays in
    # 0: the object bounces inside the frame forever. N > 0: it crosses in a straight line from `start` (outside the
    # frame), from frame `enter` on, and starts again every N frames as a new object (PASS_IDS).
    cycle: int = 0
    enter: int = 0


PULSE_PERIOD = 48  # frames per scale cycle in rotate_scale: about 2 % scale change a frame at its fastest
WAVE_LOBES = 3  # lobes of the deforming boundary
WAVE_SPEED = 0.35  # radians of wave phase per frame
TRAFFIC_CYCLE = 240  # frames between an object's passes in traffic: each crosses the frame within it


def _objects(name: str) -> list[SceneObject]:
    # Each object keeps to a band of its own (no object meets another except in `occlusion`) and stays whole in
    # the frame, bouncing off its edges; except in `traffic`, whose objects cross it.
    if name in ("translate", "pan"):
        return [SceneObject(1, 60, 45, (8.0, 5.0), start=(0.25, 0.15), lane=(0.0, 0.4)),
                SceneObject(2, 40, 40, (-6.0, 3.5), start=(0.7, 0.5), lane=(0.4, 0.6)),
                SceneObject(3, 55, 32, (3.5, -7.0), start=(0.5, 0.85), lane=(0.6, 1.0))]
    if name == "rotate_scale":
        return [SceneObject(1, 70, 40, (2.0, 1.0), spin=math.radians(3.0), pulse=0.2, start=(0.3, 0.3),
                            lane=(0.0, 0.5)),
                SceneObject(2, 50, 36, (-1.5, 2.0), spin=math.radians(-2.0), pulse=0.15, start=(0.7, 0.7),
                            lane=(0.5, 1.0))]
    if name == "occlusion":  # 1 passes behind 2 (2 is drawn last), then comes out on the other side
        return [SceneObject(1, 60, 45, (6.0, 0.0), start=(0.15, 0.5)),
                SceneObject(2, 70, 100, (0.0, 0.0), start=(0.5, 0.5))]
    if name == "crowd":  # eight objects, a band each: what carrying costs with many objects
        return [SceneObject(k + 1, 30, 22, ((-1) ** k * (3.0 + k), 1.5), start=(0.15 + 0.09 * k, (k + 0.5) / 8),
                            lane=(k / 8, (k + 1) / 8)) for k in range(8)]
    if name == "deform":
        return [SceneObject(1, 65, 55, (4.0, 2.5), deform=0.18, start=(0.3, 0.25), lane=(0.0, 0.5)),
                SceneObject(2, 45, 45, (-3.0, 3.0), deform=0.12, start=(0.7, 0.75), lane=(0.5, 1.0))]
    if name == "traffic":  # a pass every TRAFFIC_CYCLE frames each: two head-on in one lane, one across them
        return [SceneObject(1, 50, 35, (4.0, 0.0), start=(-0.1, 0.3), cycle=TRAFFIC_CYCLE),
                SceneObject(2, 50, 35, (-3.5, 0.0), start=(1.1, 0.33), cycle=TRAFFIC_CYCLE, enter=30),
                SceneObject(3, 30, 45, (0.0, 2.5), start=(0.5, -0.12), cycle=TRAFFIC_CYCLE, enter=60),
                SceneObject(4, 35, 35, (3.2, -2.4), start=(-0.08, 1.08), cycle=TRAFFIC_CYCLE, enter=100),
                SceneObject(5, 45, 30, (3.5, 0.0), start=(-0.1, 0.75), cycle=TRAFFIC_CYCLE, enter=150)]
    raise ValueError(f"unknown scene {name!r}; one of {', '.join(SCENES)}")


def _noise(rng: np.random.Generator, h: int, w: int, cells: tuple[int, ...]) -> np.ndarray:
    """Value noise in [0, 1]: random grids of the given cell sizes, upsampled smoothly and summed."""
    out = np.zeros((h, w), np.float32)
    for i, c in enumerate(cells):
        grid = rng.random((h // c + 2, w // c + 2)).astype(np.float32)
        out += cv2.resize(grid, (w + 2 * c, h + 2 * c), interpolation=cv2.INTER_CUBIC)[c:c + h, c:c + w] / (i + 1)
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _texture(rng: np.random.Generator, h: int, w: int, palette: np.ndarray) -> np.ndarray:
    """An RGB texture: noise at several scales mapped through a palette, with sharp speckles (corners to track)."""
    n = _noise(rng, h, w, (24, 9, 4))
    idx = np.clip((n * (len(palette) - 1)).round().astype(int), 0, len(palette) - 1)
    img = palette[idx].astype(np.float32) * (0.75 + 0.5 * _noise(rng, h, w, (3,)))[..., None]
    speck = rng.random((h, w)) < 0.01
    img[speck] = 255.0 - img[speck]
    return np.clip(img, 0, 255).astype(np.uint8)


def _bounce(p: float, lo: float, hi: float) -> float:
    """p reflected into [lo, hi] (a point moving at constant speed, bouncing off both ends)."""
    span = max(hi - lo, 1e-6)
    m = (p - lo) % (2 * span)
    return lo + (m if m <= span else 2 * span - m)


class Scene:
    """One named scene at a size; `frame(i)` renders frame i and its true masks."""

    def __init__(self, name: str, width: int = 640, height: int = 480, seed: int = 0):
        if width < 64 or height < 64:
            raise ValueError(f"a scene is at least 64x64 px, got {width}x{height}")
        self.name, self.width, self.height = name, width, height
        self.objects = _objects(name)
        rng = np.random.default_rng(seed)
        pad = PAN_MARGIN if name == "pan" else 0
        bg_palette = np.array([[40, 70, 50], [90, 110, 70], [150, 140, 100], [70, 90, 130], [200, 190, 160]])
        self._background = _texture(rng, height + 2 * pad, width + 2 * pad, bg_palette)
        self._pad = pad
        k = min(width / 640, height / 480)  # objects keep their share of the frame at other sizes
        self._k = k
        self._textures = {}
        for o in self.objects:
            r = int(math.ceil(self._reach(o)))
            palette = rng.integers(0, 256, (4, 3))
            self._textures[o.obj_id] = _texture(rng, 2 * r + 1, 2 * r + 1, palette)

    def camera(self, i: int) -> tuple[float, float]:
        """The background's offset on frame i (0, 0 except in `pan`)."""
        if self.name != "pan":
            return 0.0, 0.0
        p = 2 * self._pad
        return _bounce(CAMERA_PAN[0] * i, 0, p), _bounce(CAMERA_PAN[1] * i, 0, p)

    def pose(self, o: SceneObject, i: int) -> Pose:
        if o.cycle:
            t = (i - o.enter) % o.cycle
            return Pose(o.start[0] * self.width + o.velocity[0] * t, o.start[1] * self.height + o.velocity[1] * t)
        m = self._reach(o)  # centres stay far enough inside for the whole object to show
        lo, hi = o.lane[0] * self.height, o.lane[1] * self.height
        cx = _bounce(o.start[0] * self.width + o.velocity[0] * i, m, self.width - m)
        cy = _bounce(o.start[1] * self.height + o.velocity[1] * i, max(lo + m, m), min(hi - m, self.height - m))
        scale = 1.0 + o.pulse * math.sin(2 * math.pi * i / PULSE_PERIOD)
        return Pose(cx, cy, o.spin * i, scale, WAVE_SPEED * i)

    def _reach(self, o: SceneObject) -> float:
        """The farthest an object's pixels get from its centre."""
        return max(o.rx, o.ry) * self._k * (1 + o.pulse) * (1 + o.deform) + 2

    def frame(self, i: int) -> SceneFrame:
        ox, oy = self.camera(i)
        x0, y0 = int(round(ox)), int(round(oy))
        image = self._background[y0:y0 + self.height, x0:x0 + self.width].copy()
        masks: dict[int, np.ndarray] = {}
        for o in self.objects:  # back to front: a later object hides what it covers
            if i < o.enter:
                continue
            inside = self._draw(image, o, self.pose(o, i))
            for m in masks.values():
                m &= ~inside
            masks[o.obj_id + PASS_IDS * ((i - o.enter) // o.cycle) if o.cycle else o.obj_id] = inside
        if any(o.cycle for o in self.objects):  # objects out of the frame, or hidden whole, are not in it
            masks = {k: m for k, m in masks.items() if m.any()}
        return SceneFrame(image, masks)

    def _draw(self, image: np.ndarray, o: SceneObject, p: Pose) -> np.ndarray:
        """Draw one object in place; its full mask on this frame."""
        k, tex = self._k, self._textures[o.obj_id]
        r = (tex.shape[0] - 1) // 2
        reach = int(math.ceil(r * p.scale)) + 1
        xa, xb = max(0, int(p.cx) - reach), min(self.width, int(p.cx) + reach + 1)
        ya, yb = max(0, int(p.cy) - reach), min(self.height, int(p.cy) + reach + 1)
        inside = np.zeros((self.height, self.width), bool)
        if xa >= xb or ya >= yb:
            return inside
        yy, xx = np.mgrid[ya:yb, xa:xb].astype(np.float32)
        qx, qy = xx - np.float32(p.cx), yy - np.float32(p.cy)
        c, s = math.cos(p.angle), math.sin(p.angle)
        u = (c * qx + s * qy) / p.scale  # the pixel in the object's own coordinates
        v = (-s * qx + c * qy) / p.scale
        if o.deform:
            phi = np.arctan2(v, u)
            stretch = 1.0 + o.deform * np.sin(WAVE_LOBES * phi + p.wave)
            u, v = u / stretch, v / stretch
        shape = (u / (o.rx * k)) ** 2 + (v / (o.ry * k)) ** 2 <= 1.0
        colour = cv2.remap(tex, (u + r).astype(np.float32), (v + r).astype(np.float32), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
        roi = image[ya:yb, xa:xb]
        roi[shape] = colour[shape]
        inside[ya:yb, xa:xb] = shape
        return inside
