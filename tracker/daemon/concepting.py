"""A stream's concepts in the daemon: their requests and objects (tracker/concepts decides), when each is due for a
detector call, and a call's answer applied to the stream's tracker on the frame it was computed on (the past-frame
rule): SAM's mask from each box on that frame, the tracked masks there, the association, then new objects as mask
prompts on that frame and removals. Runs on the tracking thread, between frames."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from ..concepts.lifecycle import ConceptTracks
from ..concepts.state import ConceptState
from ..concepts.types import ConceptError, ConceptSpec, DetectionMask
from ..core.tracker import Tracker
from ..errors import NoDetectorError, PromptError, TooManyConceptsError, TooManyObjectsError, UnknownConceptError
from ..percentiles import Percentiles, percentiles
from ..protocol import messages
from .detecting import DetectDone, DetectorHealth

log = logging.getLogger(__name__)

MAX_CONCEPTS = 8  # concepts per stream: each adds its text to every detector call (the detectors take 16 at most)
# Detections of one concept per call given a SAM mask (the best scores first): each costs one SAM decoder pass on the
# tracking thread, measured 0.25 s at 512 px on this 2-core CPU (docs/design.md); fewer keeps a call from holding the
# stream up, more lets a crowded scene's objects all be matched each call. Threshold 0 on random weights returns 100.
MAX_DETECTIONS = 8
# Detections of one answer, all its concepts together, given a SAM mask (the best scores): the bound on what one answer
# costs the tracking thread whatever the number of concepts (8 concepts x 8 would be 16 s at 512 px here).
MAX_BOXES_PER_ANSWER = 12
# Model frames behind the newest up to which a new object is re-tracked from its answer's frame to the newest (the
# past-frame prompt path: one object's step per frame, 0.43 s each at 512 px here); further behind it is tracked from
# the next frame on from its memory of the answer's frame. Higher gives its masks on the frames between (a GPU's
# lag is a few frames); lower never spends seconds of the tracking thread on one object (a CPU's lag is 17-22).
RETRACK_MAX_LAG = 4
TIMES_KEPT = 100  # recent detector calls whose duration and lag are summarised (stats, list_concepts)
STATE_FORMAT = 1  # the version of a stream's saved concepts (`<dir>/<stream>.concepts`)


@dataclass
class _Concept:
    tracks: ConceptTracks
    last_frame: int | None = None  # the frame of its last detector call offered
    last_t: float | None = None  # when it was offered (monotonic)
    calls: int = 0  # detector answers that held its text
    ms: deque = field(default_factory=lambda: deque(maxlen=TIMES_KEPT))

    @property
    def spec(self) -> ConceptSpec:
        return self.tracks.spec

    def due(self, frame: int, now: float) -> bool:
        if self.last_frame is None:
            return True
        if self.spec.every is not None:
            return frame - self.last_frame >= self.spec.every
        return now - self.last_t >= self.spec.period_s


@dataclass(frozen=True)
class Applied:
    """What one detector answer changed on its stream: objects added on `frame` (prompted there), objects removed."""

    frame: int
    added: tuple[int, ...]
    removed: tuple[int, ...]


class StreamConcepts:
    """One stream's concepts and the objects they found. Only the tracking thread calls it; `tags` (object id ->
    label, score, status) is replaced whole on every change, so publishing threads read it without a lock."""

    def __init__(self, stream: str, tracker: Tracker, detector: str | None):
        self.stream = stream
        self.tracker = tracker
        self.detector = detector  # the daemon's detector name; None: add_concept is refused
        self._concepts: dict[str, _Concept] = {}
        self.next_id = 1  # ids handed to found objects go up from here, past every id the tracker has
        self.tags: messages.Tags = messages.NO_TAGS
        # Lifecycle events not yet published: taken every turn, so at most a turn's (each concept's objects, twice)
        self._events: list[messages.Event] = []
        # New objects of the last answer not yet prompted (frame, object, its concept, its appeared event): at most
        # the stream's max_objects (the room `_new_id` leaves counts them)
        self._adds: deque = deque()
        self.calls = self.errors = self.too_old = 0
        self.dropped = 0  # answers dropped unapplied (concept_loop: more than RESULTS_KEPT waited)
        self._ms: deque = deque(maxlen=TIMES_KEPT)
        self._lag: deque = deque(maxlen=TIMES_KEPT)
        self._apply_ms: deque = deque(maxlen=TIMES_KEPT)  # the tracking thread's time per answer applied, per turn

    # ---- requests --------------------------------------------------------------------------------
    def add(self, spec: ConceptSpec) -> bool:
        """A new concept, or new settings for a text the stream has (its objects kept; beyond a lowered
        max_objects the newest are removed, with events); whether objects were removed."""
        if self.detector is None:
            raise NoDetectorError("this daemon has no detector, so it cannot find concepts: start it with "
                                  "`samtrack serve --detector NAME` (or [detector] model; names: "
                                  "`samtrack weights list`)")
        old = self._concepts.get(spec.text)
        if old is None:
            if len(self._concepts) >= MAX_CONCEPTS:
                raise TooManyConceptsError(f"stream {self.stream!r} has {len(self._concepts)} concepts, the most it "
                                           f"takes: remove one first (remove_concept)")
            self._concepts[spec.text] = _Concept(ConceptTracks(spec, self._new_id))
            self._retag()
            return False
        tracks = old.tracks.tracks()
        keep, drop = tracks[:spec.max_objects], tracks[spec.max_objects:]
        old.tracks = ConceptTracks.from_state(ConceptState(spec, keep), self._new_id)
        self._remove_objects(drop, spec.text)
        self._retag()
        return bool(drop)

    def remove(self, text: str) -> None:
        """The concept and every object it found removed (a `removed` event each)."""
        c = self._concepts.pop(text, None)
        if c is None:
            raise UnknownConceptError(f"no concept {text!r} on stream {self.stream!r}; its concepts: "
                                      f"{sorted(self._concepts) or 'none'}")
        self._remove_objects(c.tracks.tracks(), text)
        self._retag()

    def take_events(self) -> list[messages.Event]:
        """The events since the last take, in order (to publish)."""
        out, self._events = self._events, []
        return out

    def forget(self, obj_id: int | None = None) -> None:
        """An object a client removed (None: every object, a reset or an import): no concept's any more."""
        for c in self._concepts.values():
            for t in c.tracks.tracks():
                if obj_id is None or t.obj_id == obj_id:
                    c.tracks.forget(t.obj_id)
        self.next_id = max([self.next_id, *(i + 1 for i in self.tracker.objects)])
        self._retag()

    def infos(self) -> list[messages.ConceptInfo]:
        out, waiting = [], self._waiting()
        for text, c in self._concepts.items():
            s = c.spec
            p50 = round(float(np.median(c.ms)), 1) if c.ms else None
            out.append(messages.ConceptInfo(text, s.every, s.period_s, s.threshold, s.max_objects, self.stream,
                                            [t.obj_id for t in c.tracks.tracks() if t.obj_id not in waiting], p50,
                                            c.calls))
        return out

    def spec_fields(self, spec: ConceptSpec) -> dict:
        return messages.concept_fields(spec.text, spec.every, spec.period_s, spec.threshold, spec.max_objects,
                                       self.stream)

    # ---- detector calls --------------------------------------------------------------------------
    def due(self, frame: int, now: float) -> tuple[tuple[str, ...], float]:
        """The texts due for a detector call on this model frame (marked as asked), and the lowest of their
        thresholds; no texts when none is due."""
        due = [c for c in self._concepts.values() if c.due(frame, now)]
        for c in due:
            c.last_frame, c.last_t = frame, now
        return tuple(c.spec.text for c in due), min((c.spec.threshold for c in due), default=1.0)

    def apply(self, done: DetectDone) -> Applied | None:
        """A detector answer applied on its frame; None when nothing could be (its frame left the window, the call
        failed, its concepts were removed meanwhile)."""
        self.calls += 1
        self._ms.append(done.ms)
        concepts = [self._concepts[t] for t in done.texts if t in self._concepts]
        for c in concepts:
            c.calls += 1
            c.ms.append(done.ms)
        if done.error is not None:
            self.errors += 1
            log.error("stream %s: a detector call failed on frame %d: %s", self.stream, done.frame, done.error)
            return None
        latest = self.tracker.latest_frame
        if latest is not None:
            self._lag.append(latest - done.frame)
        if not concepts:
            return None
        if done.frame not in self.tracker.window:
            self.too_old += 1
            return None
        picked = {c.spec.text: [d for d in done.detections if d.label == c.spec.text
                                and d.score >= c.spec.threshold][:MAX_DETECTIONS] for c in concepts}
        best = sorted((d for dets in picked.values() for d in dets), key=lambda d: -d.score)[:MAX_BOXES_PER_ANSWER]
        picked = {text: [d for d in dets if d in best] for text, dets in picked.items()}
        boxes = [d.box for dets in picked.values() for d in dets]
        t0 = time.perf_counter()
        masks = iter(self.tracker.masks_from_boxes(done.frame, boxes))
        found = {text: [DetectionMask(d, m) for d in dets if (m := next(masks)) is not None]
                 for text, dets in picked.items()}
        tracked = self._masks_on(done.frame, done.size)
        removed = []
        for c in concepts:
            self._room = self.tracker.options.max_objects - len(self.tracker.objects) - len(self._adds)
            update = c.tracks.update(done.frame, found[c.spec.text], tracked)
            for obj_id in update.removed:
                if obj_id in self.tracker.objects:
                    self.tracker.remove_object(obj_id)
                tracked.pop(obj_id, None)
                removed.append(obj_id)
            appeared = {e.obj_id: e for e in update.events if e.kind.value == "appeared"}
            for new in update.added:
                tracked[new.obj_id] = new.mask  # under it, the next concept's detections make nothing new
                self._adds.append((done.frame, new, c, appeared[new.obj_id]))
            self._events += [_event(e) for e in update.events if e.kind.value != "appeared"]
        self._retag()
        self._apply_ms.append(1000.0 * (time.perf_counter() - t0))
        return Applied(done.frame, (), tuple(removed))

    @property
    def adding(self) -> bool:
        """New objects of the last answer wait to be prompted (`add_waiting`)."""
        return bool(self._adds)

    def drop_waiting(self) -> None:
        """The objects waiting to be prompted forgotten (after a failure while applying their answer)."""
        for _, new, c, _ in self._adds:
            c.tracks.forget(new.obj_id)
        self._adds.clear()
        self._retag()

    def add_waiting(self, retrack_budget: int) -> Applied | None:
        """New objects of the last answer prompted on its frame, one at least, then while their re-tracking to the
        newest frame took fewer than `retrack_budget` frames (the rest wait for the next turn: each costs one
        object's step per frame since its frame, so a handful at once would hold the stream up for seconds).
        An object whose frame left the window meanwhile is dropped (counted in too_old); None when none was added."""
        before, added, frame, t0 = self.tracker.retracked_frames, [], None, time.perf_counter()
        while self._adds and (not added or self.tracker.retracked_frames - before + len(added) < retrack_budget):
            frame, new, c, event = self._adds.popleft()  # (each add costs a frame at least: one not re-tracked too)
            if not c.tracks.owns(new.obj_id):  # its concept was removed, or replaced its objects, meanwhile
                continue
            if new.obj_id in self.tracker.objects:  # a client took the id meanwhile (a click on "a new object")
                log.warning("stream %s: object %d of %r not added: a client added an object with its id first",
                            self.stream, new.obj_id, c.spec.text)
                c.tracks.forget(new.obj_id)
                continue
            if frame not in self.tracker.window:
                self.too_old += 1
                c.tracks.forget(new.obj_id)
                continue
            try:
                self.tracker.add_mask(new.obj_id, new.mask, frame_index=frame,
                                      retrack=self.tracker.latest_frame - frame <= RETRACK_MAX_LAG)
            except (PromptError, TooManyObjectsError) as e:
                log.warning("stream %s: object %d of %r not added: %s", self.stream, new.obj_id, c.spec.text, e)
                c.tracks.forget(new.obj_id)
                continue
            added.append(new.obj_id)
            self._events.append(_event(event))
        self._retag()
        self._apply_ms.append(1000.0 * (time.perf_counter() - t0))
        return Applied(frame, tuple(added), ()) if added else None

    def detector_stats(self, health: DetectorHealth) -> messages.DetectorStats | None:
        """This stream's calls, with the state of the daemon's detector process."""
        if self.detector is None:
            return None
        return messages.DetectorStats(self.detector, self.calls, _summary(self._ms), _summary(self._lag),
                                      self.too_old, self.errors, _summary(self._apply_ms), self.dropped,
                                      health.alive, health.pid, health.restarts, health.hung, health.last_error)

    # ---- saved form --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready: every concept's request and objects (not those waiting to be added), and the next id (the
        state directory)."""
        waiting = self._waiting()
        return {"format": STATE_FORMAT, "next_id": self.next_id,
                "concepts": [ConceptState(c.spec, tuple(t for t in c.tracks.tracks() if t.obj_id not in waiting))
                             .as_dict() for c in self._concepts.values()]}

    def restore(self, data: dict) -> None:
        """The concepts of `to_dict` back, their objects kept where the tracker has them; ConceptError when the
        data is not such a dict."""
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT \
                or not isinstance(data.get("next_id"), int) or not isinstance(data.get("concepts"), list) \
                or len(data["concepts"]) > MAX_CONCEPTS:
            raise ConceptError(f"not a stream's saved concepts (format {STATE_FORMAT}, at most {MAX_CONCEPTS})")
        concepts = {}
        for item in data["concepts"]:
            state = ConceptState.from_dict(item)
            live = tuple(t for t in state.tracks if t.obj_id in self.tracker.objects)
            concepts[state.spec.text] = _Concept(ConceptTracks.from_state(ConceptState(state.spec, live),
                                                                          self._new_id))
        self._concepts = concepts
        self.next_id = max([data["next_id"], 1, *(i + 1 for i in self.tracker.objects)])
        self._retag()

    # ---- inside ------------------------------------------------------------------------------------
    _room = 0  # objects the tracker may still take during one update (set before each)

    def _new_id(self) -> int | None:
        """An id no object of the stream has had from this allocator, above every tracked id; None when the
        stream's tracker is full."""
        if self._room <= 0:
            return None
        self._room -= 1
        obj_id = max([self.next_id, *(i + 1 for i in self.tracker.objects)])
        self.next_id = obj_id + 1
        return obj_id

    def _masks_on(self, frame: int, size: tuple[int, int]) -> dict[int, np.ndarray]:
        """Every tracked object's mask on `frame` of `size` (H, W): an empty one for an object with none there (one
        prompted after it), which its concept counts as unmatched rather than gone."""
        result = self.tracker.result(frame)
        return {i: result.objects[i].mask if i in result.objects else np.zeros(size, dtype=bool)
                for i in self.tracker.objects}

    def _waiting(self) -> set[int]:
        """Found objects waiting to be prompted: never announced (their `appeared` leaves when they are added), so
        in no event, reply nor saved state, and a client may hold their ids meanwhile."""
        return {new.obj_id for _, new, _, _ in self._adds}

    def _remove_objects(self, tracks, label: str) -> None:
        """A concept's objects removed from the tracker, a `removed` event each (on the newest frame); one still
        waiting to be prompted is only dropped from the waiting ones."""
        frame = self.tracker.latest_frame if self.tracker.latest_frame is not None else -1
        waiting = self._waiting() & {t.obj_id for t in tracks}
        self._adds = deque(a for a in self._adds if a[1].obj_id not in waiting)
        for t in tracks:
            if t.obj_id in waiting:
                continue
            if t.obj_id in self.tracker.objects:
                self.tracker.remove_object(t.obj_id)
            self._events.append(messages.Event("removed", frame, t.obj_id, label, t.score))

    def _retag(self) -> None:
        """Tags of the concepts' objects in the tracker (one waiting to be prompted is in no result yet)."""
        objects = set(self.tracker.objects)
        self.tags = MappingProxyType({t.obj_id: messages.ObjectTag(c.spec.text, t.score, t.status.value)
                                      for c in self._concepts.values() for t in c.tracks.tracks()
                                      if t.obj_id in objects})


def _event(e) -> messages.Event:
    return messages.Event(e.kind.value, e.frame, e.obj_id, e.label, e.score)


def _summary(values: deque) -> Percentiles | None:
    return percentiles(list(values)) if values else None
