"""A concept's matching and lifecycles (tracker/concepts/) measured against a synthetic scene's truth, apart from
any detector or model: a truth detector (the scene's true boxes jittered, some missed, false boxes added, seeded)
every few frames, and a perfect tracker (each object it holds has its true mask on every frame), so only the
association and the lifecycle rules decide what is tracked. Scored with py-motmetrics (IDF1, identity switches)
and by counting duplicates, ghosts, frames to confirm and objects lost while the detector still saw them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import motmetrics as mm
import numpy as np

from pipelines.scenes import Scene
from tracker.concepts.association import Region, intersection, iou
from tracker.concepts.lifecycle import ConceptTracks, ConceptUpdate
from tracker.concepts.state import TrackStatus
from tracker.concepts.types import ConceptSpec, Detection, DetectionMask, EventKind

LABEL = "thing"  # the concept's text: the truth detector finds every object of the scene
# The truth detector.
MISS_RATE = 0.2  # share of visible objects a call misses (the 20 %), each call and object drawn anew
JITTER = 0.08  # standard deviation of each box corner's shift, as a share of the box's size
TRUE_SCORES = (0.35, 0.95)  # a true box's score, uniform: all above the concept's default threshold 0.3
FALSE_PER_CALL = 1.0  # false boxes a call, Poisson-distributed
FALSE_SCORES = (0.3, 0.8)  # a false box's score, uniform: most pass the threshold, some above true ones
FALSE_SIZE = (0.06, 0.2)  # a random false box's sides, as shares of the frame's (those of the scene's objects)
FALSE_PART = 0.5  # share of false boxes on part of a visible object (a wheel for a car); the rest anywhere
MIN_VISIBLE = 0.002  # share of the frame an object shows before the truth detector can see it (an edge's sliver)
MATCH_IOU = 0.5  # mask IoU at which a tracked object is a scene object's, for the scores and the perfect tracker


@dataclass
class TruthDetector:
    """The scene's true boxes, jittered, MISS_RATE of them missed, false boxes added; each detection's mask is
    what SAM would give from its box here: the true mask inside the box (a false box: the ellipse in it)."""

    width: int
    height: int
    seed: int
    rng: np.random.Generator = field(init=False)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def detectable(self, masks: Mapping[int, np.ndarray]) -> dict[int, Region]:
        """The scene objects a call can see: those showing MIN_VISIBLE of the frame or more."""
        least = MIN_VISIBLE * self.width * self.height
        regions = {k: Region.of(m) for k, m in masks.items()}
        return {k: r for k, r in regions.items() if r.area >= least}

    def __call__(self, masks: Mapping[int, np.ndarray]) -> tuple[list[DetectionMask], dict[int, DetectionMask]]:
        """This frame's detections (true and false, shuffled), and the true ones by scene object."""
        true: dict[int, DetectionMask] = {}
        for k, r in self.detectable(masks).items():
            if self.rng.random() < MISS_RATE:
                continue
            box = self._jitter((r.x0, r.y0, r.x1, r.y1))
            score = float(self.rng.uniform(*TRUE_SCORES))
            true[k] = DetectionMask(Detection(box, score, LABEL), r.mask & self._box_mask(box))
        false = [self._false(masks) for _ in range(self.rng.poisson(FALSE_PER_CALL))]
        out = list(true.values()) + false
        return [out[i] for i in self.rng.permutation(len(out))], true

    def _jitter(self, box: tuple[float, ...]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = box
        sx, sy = JITTER * (x1 - x0), JITTER * (y1 - y0)
        d = self.rng.normal(0.0, 1.0, 4) * (sx, sy, sx, sy)
        x0, x1 = sorted((float(np.clip(x0 + d[0], 0, self.width)), float(np.clip(x1 + d[2], 0, self.width))))
        y0, y1 = sorted((float(np.clip(y0 + d[1], 0, self.height)), float(np.clip(y1 + d[3], 0, self.height))))
        return x0, y0, x1, y1

    def _box_mask(self, box: tuple[float, float, float, float]) -> np.ndarray:
        m = np.zeros((self.height, self.width), bool)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        m[y0:y1, x0:x1] = True
        return m

    def _false(self, masks: Mapping[int, np.ndarray]) -> DetectionMask:
        score = float(self.rng.uniform(*FALSE_SCORES))
        visible = [m for m in masks.values() if m.any()]
        if visible and self.rng.random() < FALSE_PART:  # a part: a quarter to a half of an object's box
            r = Region.of(visible[self.rng.integers(len(visible))])
            w, h = (r.x1 - r.x0) * self.rng.uniform(0.5, 0.7), (r.y1 - r.y0) * self.rng.uniform(0.5, 0.7)
            x0, y0 = self.rng.uniform(r.x0, r.x1 - w), self.rng.uniform(r.y0, r.y1 - h)
            box = (x0, y0, x0 + w, y0 + h)
            return DetectionMask(Detection(box, score, LABEL), r.mask & self._box_mask(box))
        w, h = self.width * self.rng.uniform(*FALSE_SIZE), self.height * self.rng.uniform(*FALSE_SIZE)
        x0, y0 = self.rng.uniform(0, self.width - w), self.rng.uniform(0, self.height - h)
        yy, xx = np.mgrid[0:self.height, 0:self.width]
        ellipse = ((xx - x0 - w / 2) / (w / 2)) ** 2 + ((yy - y0 - h / 2) / (h / 2)) ** 2 <= 1.0
        return DetectionMask(Detection((x0, y0, x0 + w, y0 + h), score, LABEL), ellipse)


class PerfectTracker:
    """The tracker's objects as a perfect tracker would hold them: an object made from a mask lying mostly (half
    or more) on a scene object has that object's true mask on every frame (empty once it has left: a part grows
    into the whole, as SAM 2's memory often makes it); one made anywhere else keeps its first mask where it was
    (SAM holding a patch of background)."""

    def __init__(self):
        self.truth_of: dict[int, int | None] = {}  # object id -> the scene object it follows (None: a patch)
        self._still: dict[int, np.ndarray] = {}

    def masks(self, truth: Mapping[int, np.ndarray], shape: tuple[int, int]) -> dict[int, np.ndarray]:
        empty = np.zeros(shape, bool)
        return {i: (truth.get(g, empty) if g is not None else self._still[i]) for i, g in self.truth_of.items()}

    def apply(self, update: ConceptUpdate, truth: Mapping[int, np.ndarray]) -> None:
        for i in update.removed:
            del self.truth_of[i]
            self._still.pop(i, None)
        for n in update.added:
            r = Region.of(n.mask)
            on = {g: intersection(r, Region.of(m)) for g, m in truth.items()}
            best = max(on, key=on.__getitem__, default=None)
            if best is not None and 2 * on[best] >= r.area:
                self.truth_of[n.obj_id] = best
            else:
                self.truth_of[n.obj_id], self._still[n.obj_id] = None, n.mask


@dataclass
class Life:
    """What the scoring keeps of one tracked object: when it was made and confirmed, the scene objects it matched."""

    born: int
    confirmed: int | None = None
    end: int | None = None
    matched: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class TruthRun:
    """One scene, one seed: the scores."""

    scene: str
    seed: int
    frames: int
    every: int
    # Scores of the confirmed and lost objects (tentative ones are flagged in results as not yet found) against
    # each scene object from its first true detection on: before it no association could have found it.
    idf1: float
    id_switches: int
    mota: float
    idf1_with_tentative: float  # the tentative objects scored as found too
    idf1_every_frame: float  # scene objects scored from their first visible pixel (an edge's sliver) on
    duplicates: int  # scene objects that two tracked objects matched on one frame
    confirm_frames: list[int]  # per scene object: frames from its first detection to its object's confirmation
    unconfirmed: int  # scene objects detected on 3 calls or more that no confirmed object ever matched
    ghosts: list[int]  # per tracked object that never matched a scene object: frames it lived
    confirmed_ghosts: int
    lost_to_misses: int  # lost, retracted or removed while its scene object was in view for the detector
    longest_miss_run: int  # most detector calls in a row that missed one visible scene object
    events: dict[str, int]


def tentative(concept: ConceptTracks, obj_id: int) -> bool:
    return any(t.obj_id == obj_id and t.status is TrackStatus.TENTATIVE for t in concept.tracks())


def run(scene_name: str, seed: int, frames: int, every: int, width: int, height: int,
        spec: ConceptSpec | None = None) -> TruthRun:
    """The scene's first `frames` frames, a truth-detector call every `every` frames from frame 0."""
    scene = Scene(scene_name, width, height)
    detector = TruthDetector(width, height, seed)
    tracker = PerfectTracker()
    next_id = iter(range(1, 1_000_000))
    concept = ConceptTracks(spec or ConceptSpec(LABEL, every=every), lambda: next(next_id))
    acc_found = mm.MOTAccumulator(auto_id=True)  # the objects a client takes as found: confirmed or lost
    acc_all = mm.MOTAccumulator(auto_id=True)  # tentative ones too
    acc_every = mm.MOTAccumulator(auto_id=True)  # scene objects scored from their first visible pixel
    lives: dict[int, Life] = {}
    first_seen: dict[int, int] = {}  # scene object -> frame of its first true detection above the threshold
    calls_seen: dict[int, int] = {}  # scene object -> detector calls that saw it
    miss_run: dict[int, int] = {}  # scene object -> calls in a row that missed it while it was detectable
    longest_miss_run, lost_to_misses, duplicated = 0, 0, set()
    events = {k.value: 0 for k in EventKind}
    shape = (height, width)
    for i in range(frames):
        truth = scene.frame(i).masks
        if i % every == 0:
            detections, true = detector(truth)
            for g in detector.detectable(truth):
                miss_run[g] = 0 if g in true else miss_run.get(g, 0) + 1
                longest_miss_run = max(longest_miss_run, miss_run[g])
            for g in (g for g, d in true.items() if d.detection.score >= concept.spec.threshold):
                first_seen.setdefault(g, i)
                calls_seen[g] = calls_seen.get(g, 0) + 1
            update = concept.update(i, detections, tracker.masks(truth, shape))
            visible = detector.detectable(truth)
            for e in update.events:
                events[e.kind.value] += 1
                g = tracker.truth_of.get(e.obj_id)
                if e.kind in (EventKind.LOST, EventKind.RETRACTED, EventKind.REMOVED) and g in visible:
                    lost_to_misses += 1
                if e.kind is EventKind.CONFIRMED:
                    lives[e.obj_id].confirmed = i
                if e.kind in (EventKind.RETRACTED, EventKind.REMOVED):
                    lives[e.obj_id].end = i
            tracker.apply(update, truth)
            lives.update({n.obj_id: Life(i) for n in update.added})
        tracked = {k: Region.of(m) for k, m in tracker.masks(truth, shape).items()}
        tracked = {k: r for k, r in tracked.items() if r.area}  # an empty mask: the object is absent
        gt = {g: Region.of(m) for g, m in truth.items()}
        ids = list(tracked)
        ious = np.array([[iou(gt[g], tracked[h]) for h in ids] for g in gt]).reshape(len(gt), len(ids))
        found = [n for n, h in enumerate(ids) if concept.owns(h) and not tentative(concept, h)]
        seen = [n for n, g in enumerate(gt) if g in first_seen]
        for acc, rows, cols in ((acc_found, seen, found), (acc_all, seen, list(range(len(ids)))),
                                (acc_every, list(range(len(gt))), found)):
            sub = ious[np.ix_(rows, cols)]
            acc.update([list(gt)[r] for r in rows], [ids[c] for c in cols],
                       np.where(sub >= MATCH_IOU, 1.0 - sub, np.nan))
        for (a, b) in zip(*np.nonzero(ious >= MATCH_IOU)):
            lives[ids[b]].matched.add(list(gt)[a])
        duplicated.update(g for g, row in zip(gt, ious[:, found]) if (row >= MATCH_IOU).sum() > 1)
    metrics = mm.metrics.create()
    summary = metrics.compute(acc_found, metrics=["idf1", "num_switches", "mota"], name="run").loc["run"]
    with_tentative = metrics.compute(acc_all, metrics=["idf1"], name="run").loc["run"]
    every_frame = metrics.compute(acc_every, metrics=["idf1"], name="run").loc["run"]
    confirmed_at = {}  # scene object -> first frame a confirmed object matched it
    for life in lives.values():
        for g in life.matched:
            if life.confirmed is not None:
                confirmed_at[g] = min(confirmed_at.get(g, frames), life.confirmed)
    ghosts = [(life.end if life.end is not None else frames) - life.born for life in lives.values() if not life.matched]
    return TruthRun(
        scene_name, seed, frames, every, round(float(summary["idf1"]), 4), int(summary["num_switches"]),
        round(float(summary["mota"]), 4), round(float(with_tentative["idf1"]), 4),
        round(float(every_frame["idf1"]), 4), len(duplicated),
        sorted(confirmed_at[g] - first_seen[g] for g in confirmed_at if g in first_seen),
        sum(1 for g, n in calls_seen.items() if n >= 3 and g not in confirmed_at),
        ghosts, sum(1 for life in lives.values() if not life.matched and life.confirmed is not None),
        lost_to_misses, longest_miss_run, events)
