"""One concept's objects across detector calls: which detections match which objects, which make new objects,
and when an object is confirmed, lost, refound, retracted or removed. It decides; the caller applies its
decisions to the tracker (new objects from their masks, removals) and publishes the events."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .association import Region, assign, covered_fraction, iou, iou_matrix
from .state import ConceptState, Track, TrackStatus
from .types import ConceptError, ConceptSpec, DetectionMask, EventKind, LifecycleEvent

# The limits below were chosen on `samtrack bench concepts` (bench/concepts.py: true boxes jittered, 20 % missed,
# about one false box a call, objects entering, leaving and crossing; a call every 5 frames; 3 seeds of traffic,
# 720 frames each; docs/benchmarks.md).
# Mask IoU a detection needs with an object to be that object's. Lower tolerates a box's SAM mask that differs more
# from the tracked mask; higher keeps a false box next to an object from confirming or keeping it. Measured: worst
# IDF1 0.946 at 0.3 (4 false objects confirmed), 0.963 at 0.5 (1), 0.981 at 0.7 (0); 0.7 is not taken because the
# truth detector's masks are the true ones cut by the box, closer to the tracked masks than SAM's will be.
MIN_MATCH_IOU = 0.5
# Share of a detection's mask already under tracked objects (any object: clicked, this concept's, another's) above
# which it makes no new object. Lower refuses a new object whose mask touches a tracked one (SAM's masks of
# neighbours overlap at their edges; the truth masks never do); higher lets the part of a tracked object a detector
# boxes on its own become a duplicate. Measured: 0.1 and 0.3 alike (worst IDF1 0.963), 0.5 lower (0.961; at IoU
# 0.3 an identity switch).
MAX_COVERED_NEW = 0.3
MIN_NEW_AREA = 16  # pixels a detection's mask needs to make an object: SAM's empty or speck masks make none
# Matching detections that confirm a tentative object, the one that made it included. Each more delays every real
# object by a detector call and helps against false boxes that repeat at one place. Measured: 2 confirms in 5.3
# frames on average (max 15) with 1 false object confirmed in 3 runs; 3 in 12 frames (max 40), none confirmed, but
# real objects retracted (up to 4 in 3 runs) unless the window grows to 6, and IDF1 from each object's first
# visible pixel no better (0.939-0.942 against 0.943).
CONFIRM_HITS = 2
# Detector calls a tentative object has to be confirmed, the one that made it included; then it is retracted.
# Longer keeps a false object longer (each lives the whole window: 4 calls, 20 frames, at 5); shorter retracts real
# ones the detector missed (with p ** (CONFIRM_WINDOW - 1) at miss rate p: 1 in 625 at 20 % and 5). 4, 5 and 6
# measured alike (none real retracted).
CONFIRM_WINDOW = 5
# Unmatched detector calls in a row before a confirmed object is `lost` (still tracked). Fewer says sooner that an
# object went away; more keeps detector misses from calling a present object lost (p ** LOST_AFTER a call: 1 in
# 15,625 at 20 %). Measured: 5 called one of crowd's objects lost (5 misses in a row, then refound), the longest run
# of misses of a visible object in 9 runs (about 8,000 object-calls).
LOST_AFTER = 6
# Unmatched detector calls in a row before an object is removed from the tracker (it holds its place among
# max_objects till then). Longer lets an object come back after a longer absence with its id (refound); shorter
# frees its place sooner. 20 calls: 100 frames at a call every 5, 20 s at the default cadence of one a second.
REMOVE_AFTER = 20
# Mask IoU between two of a concept's objects above which the younger is a duplicate and is removed (the tracker
# let two objects converge on one thing). Lower also removes objects that merely overlap a lot. Never reached in
# the truth scenario (its tracker is perfect): a guard for SAM drifting, not measured here.
DUPLICATE_IOU = 0.8


@dataclass(frozen=True)
class NewObject:
    """An object to add to the tracker on the detector call's frame, from its detection's mask."""

    obj_id: int
    mask: np.ndarray  # HxW bool
    box: tuple[float, float, float, float]
    label: str
    score: float


@dataclass(frozen=True)
class ConceptUpdate:
    """What one detector call decided: objects to add, object ids to remove, and the events, in that order."""

    frame: int
    added: tuple[NewObject, ...]
    removed: tuple[int, ...]
    events: tuple[LifecycleEvent, ...]


class ConceptTracks:
    """The objects one concept found on one stream, and their lifecycles. `new_id()` gives an unused object id
    for the stream (None when it has none left: the detection is then ignored)."""

    def __init__(self, spec: ConceptSpec, new_id: Callable[[], int | None]):
        self.spec = spec
        self._new_id = new_id
        self._tracks: dict[int, Track] = {}

    @property
    def label(self) -> str:
        return self.spec.text

    def tracks(self) -> tuple[Track, ...]:
        """This concept's objects, by id."""
        return tuple(self._tracks[i] for i in sorted(self._tracks))

    def owns(self, obj_id: int) -> bool:
        return obj_id in self._tracks

    def forget(self, obj_id: int) -> bool:
        """An object removed by someone else (a client's removal, a reset): no longer this concept's."""
        return self._tracks.pop(obj_id, None) is not None

    def to_state(self) -> ConceptState:
        return ConceptState(self.spec, self.tracks())

    @classmethod
    def from_state(cls, state: ConceptState, new_id: Callable[[], int | None]) -> ConceptTracks:
        if len(state.tracks) > state.spec.max_objects:
            raise ConceptError(f"{len(state.tracks)} saved objects for at most {state.spec.max_objects}")
        out = cls(state.spec, new_id)
        out._tracks = {t.obj_id: t for t in state.tracks}
        return out

    def update(self, frame: int, detections: Sequence[DetectionMask],
               tracked: Mapping[int, np.ndarray]) -> ConceptUpdate:
        """One detector call on `frame`: its detections with their masks, and the mask on that frame of every object
        the stream tracks (this concept's and all others). This concept's objects missing from `tracked` are
        forgotten (the tracker no longer has them)."""
        for gone in [i for i in self._tracks if i not in tracked]:
            del self._tracks[gone]
        events: list[LifecycleEvent] = []
        removed: list[int] = []
        regions = {i: Region.of(m) for i, m in tracked.items()}
        kept = sorted((d for d in detections if d.detection.score >= self.spec.threshold),
                      key=lambda d: -d.detection.score)
        det_regions = [Region.of(d.mask) for d in kept]
        own = sorted(self._tracks)
        pairs = assign(iou_matrix(det_regions, [regions[i] for i in own]), MIN_MATCH_IOU)
        matched = {own[t]: kept[d].detection.score for d, t in pairs}
        for obj_id in own:
            event = self._advance(obj_id, matched.get(obj_id))
            if event is not None:
                events.append(LifecycleEvent(event, frame, obj_id, self.label, self._tracks[obj_id].score))
                if event in (EventKind.RETRACTED, EventKind.REMOVED):
                    removed.append(obj_id)
        for obj_id in self._duplicates(regions, removed):
            kind = EventKind.RETRACTED if self._tracks[obj_id].status is TrackStatus.TENTATIVE else EventKind.REMOVED
            events.append(LifecycleEvent(kind, frame, obj_id, self.label, self._tracks[obj_id].score))
            removed.append(obj_id)
        for obj_id in removed:
            del self._tracks[obj_id]
        taken = {d for d, _ in pairs}
        added = self._make(frame, [(kept[d], det_regions[d]) for d in range(len(kept)) if d not in taken],
                           [r for i, r in regions.items() if i not in removed])
        events += [LifecycleEvent(EventKind.APPEARED, frame, n.obj_id, self.label, n.score) for n in added]
        return ConceptUpdate(frame, tuple(added), tuple(removed), tuple(events))

    def _advance(self, obj_id: int, score: float | None) -> EventKind | None:
        """One call's step of an object's lifecycle: matched by a detection of `score`, or unmatched (None)."""
        t = self._tracks[obj_id]
        if score is not None:
            t = dataclasses.replace(t, score=score, misses=0)
        else:
            t = dataclasses.replace(t, misses=min(t.misses + 1, REMOVE_AFTER))
        event = None
        if t.status is TrackStatus.TENTATIVE:
            t = dataclasses.replace(t, calls=t.calls + 1, hits=t.hits + (score is not None))
            if t.hits >= CONFIRM_HITS:
                t, event = dataclasses.replace(t, status=TrackStatus.CONFIRMED), EventKind.CONFIRMED
            elif t.calls >= CONFIRM_WINDOW:
                event = EventKind.RETRACTED
        elif score is not None and t.status is TrackStatus.LOST:
            t, event = dataclasses.replace(t, status=TrackStatus.CONFIRMED), EventKind.REFOUND
        elif t.misses >= REMOVE_AFTER:
            event = EventKind.REMOVED
        elif t.misses >= LOST_AFTER and t.status is TrackStatus.CONFIRMED:
            t, event = dataclasses.replace(t, status=TrackStatus.LOST), EventKind.LOST
        self._tracks[obj_id] = t
        return event

    def _duplicates(self, regions: Mapping[int, Region], removed: list[int]) -> list[int]:
        """This concept's objects that duplicate an older one of its own (mask IoU DUPLICATE_IOU or more)."""
        alive = sorted((i for i in self._tracks if i not in removed), key=lambda i: (self._tracks[i].born, i))
        out: list[int] = []
        for k, young in enumerate(alive):
            if any(old not in out and iou(regions[old], regions[young]) >= DUPLICATE_IOU for old in alive[:k]):
                out.append(young)
        return out

    def _make(self, frame: int, candidates: list[tuple[DetectionMask, Region]],
              tracked: list[Region]) -> list[NewObject]:
        """New objects from unmatched detections, best score first: each over untracked area (by every tracked
        object and the ones made before it), while the concept has room and the stream has ids."""
        covering = list(tracked)
        added: list[NewObject] = []
        for d, region in candidates:
            if len(self._tracks) >= self.spec.max_objects:
                break
            if region.area < MIN_NEW_AREA or covered_fraction(region, covering) > MAX_COVERED_NEW:
                continue
            obj_id = self._new_id()
            if obj_id is None:
                break
            if obj_id in self._tracks:
                raise ConceptError(f"the id allocator gave {obj_id}, an id this concept already holds")
            score = d.detection.score
            self._tracks[obj_id] = Track(obj_id, TrackStatus.TENTATIVE, frame, score, 1, 1, 0)
            covering.append(region)
            added.append(NewObject(obj_id, region.mask, d.detection.box, self.label, score))
        return added
