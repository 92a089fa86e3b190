"""What a concept keeps between detector calls, as plain values: its request and each object's counters. It is
all a restart needs (the objects' masks live in the tracker's own state), and it converts to and from a
JSON-ready dict for the daemon's state directory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from .types import ConceptError, ConceptSpec


class TrackStatus(StrEnum):
    """Where an object a concept found stands."""

    TENTATIVE = "tentative"  # appeared, not confirmed yet: drawn differently, retracted if never confirmed
    CONFIRMED = "confirmed"
    LOST = "lost"  # confirmed, then unmatched for a while: still tracked, refound by a matching detection


@dataclass(frozen=True)
class Track:
    """One object a concept found. Every counter is capped by the lifecycle's limits, so a track's size is fixed."""

    obj_id: int
    status: TrackStatus
    born: int  # frame of the detector call that made it
    score: float  # the last matching detection's score
    calls: int  # detector calls since it was made, that one included (counted only while tentative)
    hits: int  # detections that matched it (counted only while tentative)
    misses: int  # detector calls in a row that no detection matched it


@dataclass(frozen=True)
class ConceptState:
    """A concept's request and its objects, sorted by id."""

    spec: ConceptSpec
    tracks: tuple[Track, ...]

    def as_dict(self) -> dict:
        """JSON-ready: strings, numbers, None, lists and dicts only."""
        return {"spec": dataclasses.asdict(self.spec),
                "tracks": [{**dataclasses.asdict(t), "status": t.status.value} for t in self.tracks]}

    @classmethod
    def from_dict(cls, data: dict) -> ConceptState:
        """The inverse of as_dict; a missing, extra or out-of-range field raises ConceptError."""
        try:
            spec = ConceptSpec(**data["spec"])
            tracks = tuple(_track(t) for t in data["tracks"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConceptError(f"a concept's saved state is malformed: {e}") from e
        ids = [t.obj_id for t in tracks]
        if len(set(ids)) != len(ids) or len(ids) > spec.max_objects:
            raise ConceptError(f"a concept's saved state holds {len(ids)} objects, ids {ids}: at most "
                               f"{spec.max_objects}, each id once")
        return cls(spec, tuple(sorted(tracks, key=lambda t: t.obj_id)))


def _track(t: dict) -> Track:
    fields = {f.name for f in dataclasses.fields(Track)}
    if set(t) != fields:
        raise ConceptError(f"a saved track has fields {sorted(t)}, expected {sorted(fields)}")
    ints = ("obj_id", "born", "calls", "hits", "misses")
    if any(isinstance(t[k], bool) or not isinstance(t[k], int) or t[k] < 0 for k in ints):
        raise ConceptError(f"a saved track's {', '.join(ints)} are whole numbers >= 0, got {t}")
    if isinstance(t["score"], bool) or not isinstance(t["score"], int | float):
        raise ConceptError(f"a saved track's score is a number, got {t['score']!r}")
    return Track(t["obj_id"], TrackStatus(t["status"]), t["born"], float(t["score"]), t["calls"], t["hits"],
                 t["misses"])
