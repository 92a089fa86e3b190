"""The concept room's values: a concept's request, a detector's detection and its SAM mask, and the lifecycle
events of the objects a concept finds."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

# Limits of a concept's request (ConceptSpec), checked when it is made; the one definition: the wire's add_concept
# (tracker/protocol/requests.py) and the detectors (tracker/models/detectors/base.py) read these.
# Characters of a concept's text: a short noun phrase ("forklift", "person in a red vest"). OWLv2 reads 16 tokens per
# text, SAM 3 32: a longer text would be cut by the tokenizer without a word.
MAX_TEXT = 64
MAX_EVERY = 100_000  # frames between detector calls, at most (about an hour at 30 fps)
MAX_EVERY_S = 3600.0  # seconds between detector calls, at most
# Objects one concept may hold, at most: [memory] max_objects' own ceiling, so a stream set to track a crowd can give
# one concept all of it; a concept never holds more than its stream tracks (the stream's room bounds it), and what one
# detector call costs is bounded apart from this (the daemon's MAX_DETECTIONS per concept).
MAX_CONCEPT_OBJECTS = 1024
DEFAULT_EVERY_S = 1.0  # a detector call a second unless said otherwise: the cost goal is set at this cadence
# Detector score a detection needs to count at all (to match a track or make one). Open-vocabulary detectors' scores
# are low and uncalibrated (OWLv2 and Grounding DINO use 0.1..0.35 in their examples): 0.3 keeps their confident
# boxes; lower finds more objects and more false ones (each still has to be confirmed, lifecycle.py).
DEFAULT_THRESHOLD = 0.3
DEFAULT_MAX_OBJECTS = 16  # objects a concept holds unless said otherwise: half the tracker's default 32


class ConceptError(ValueError):
    """A concept's request or saved state out of range; the message names the field and what it must be."""


@dataclass(frozen=True)
class Detection:
    """One box a detector found for a concept: corners (x0, y0, x1, y1) in frame pixels, its score, the concept."""

    box: tuple[float, float, float, float]
    score: float
    label: str


@dataclass(frozen=True)
class DetectionMask:
    """A detection and its mask on the frame it was found on (SAM's mask from its box, made by the caller)."""

    detection: Detection
    mask: np.ndarray  # HxW bool


class EventKind(StrEnum):
    """What happened to an object a concept found."""

    APPEARED = "appeared"  # made from a detection, tentative until confirmed
    CONFIRMED = "confirmed"  # matched by enough detections: a real object
    LOST = "lost"  # a confirmed object no detection matched for a while: still tracked
    REFOUND = "refound"  # a lost object matched again
    RETRACTED = "retracted"  # a tentative object never confirmed: removed
    REMOVED = "removed"  # a lost object unmatched for longer still, or a duplicate of another: removed


@dataclass(frozen=True)
class LifecycleEvent:
    """One change of an object's lifecycle, on the frame of the detector call that decided it."""

    kind: EventKind
    frame: int
    obj_id: int
    label: str
    score: float  # the detection's score that matched (appeared, confirmed, refound), else the last one


@dataclass(frozen=True)
class ConceptSpec:
    """A concept prompt: find every `text` with the detector every `every` frames or `every_s` seconds (neither:
    every DEFAULT_EVERY_S s), keep detections scoring `threshold` or more, hold at most `max_objects` objects, on
    `stream` (None: the daemon's only stream)."""

    text: str
    every: int | None = None
    every_s: float | None = None
    threshold: float = DEFAULT_THRESHOLD
    max_objects: int = DEFAULT_MAX_OBJECTS
    stream: str | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "text", concept_text(self.text))  # frozen: the text as it is kept
        except ConceptError as e:
            raise ConceptError(f"text: {e}") from None
        if self.every is not None and self.every_s is not None:
            raise ConceptError("every and every_s: give one of them, not both")
        if self.every is not None and (isinstance(self.every, bool) or not isinstance(self.every, int)
                                       or not 1 <= self.every <= MAX_EVERY):
            raise ConceptError(f"every: whole frames from 1 to {MAX_EVERY}, got {self.every!r}")
        if self.every_s is not None and not (_number(self.every_s) and 0 < self.every_s <= MAX_EVERY_S):
            raise ConceptError(f"every_s: seconds above 0 and at most {MAX_EVERY_S:g}, got {self.every_s!r}")
        if not (_number(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ConceptError(f"threshold: a score from 0 to 1, got {self.threshold!r}")
        if isinstance(self.max_objects, bool) or not isinstance(self.max_objects, int) \
                or not 1 <= self.max_objects <= MAX_CONCEPT_OBJECTS:
            raise ConceptError(f"max_objects: from 1 to {MAX_CONCEPT_OBJECTS}, got {self.max_objects!r}")
        if self.stream is not None and (not isinstance(self.stream, str) or not self.stream):
            raise ConceptError(f"stream: a stream's name or None, got {self.stream!r}")

    @property
    def period_s(self) -> float | None:
        """Seconds between detector calls when the cadence is in seconds (None when it is in frames)."""
        if self.every is not None:
            return None
        return DEFAULT_EVERY_S if self.every_s is None else float(self.every_s)


def concept_text(text: object) -> str:
    """`text` without its surrounding whitespace, when that may be a concept's text: 1 to MAX_TEXT characters, none
    of them a control or format character (Unicode category C: "\\n", "\\t", "\\x00", a zero-width space: the
    detectors' tokenizers drop or mangle them, so a text of them alone asks for nothing). ConceptError saying why
    otherwise."""
    allowed = (f"a phrase of 1 to {MAX_TEXT} characters once surrounding spaces are dropped, without control or "
               "format characters (Unicode category C: line breaks, tabs, zero-width spaces)")
    if not isinstance(text, str):
        raise ConceptError(f"{allowed}; got {type(text).__name__}")
    kept = text.strip()
    if not kept:
        raise ConceptError(f"{allowed}; got {'only spaces' if text else 'nothing'}")
    if len(kept) > MAX_TEXT:
        raise ConceptError(f"{allowed}; got {len(kept)} characters")
    bad = next((c for c in kept if unicodedata.category(c).startswith("C")), None)
    if bad is not None:
        raise ConceptError(f"{allowed}; got U+{ord(bad):04X} (category {unicodedata.category(bad)}) in {kept!r}")
    return kept


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
