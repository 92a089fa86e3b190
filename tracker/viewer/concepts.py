"""What the viewer lets a page do with concept prompts ("track every X"): the concept requests it relays, checked
before they reach the daemon (fields, sizes, and how often a concept may be added), and the daemon's lifecycle
events reduced to the fields the page shows."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import protocol as P

CONCEPT_OPS = frozenset({"add_concept", "remove_concept", "list_concepts"})
EVENT_KINDS = frozenset({"appeared", "confirmed", "lost", "refound", "retracted", "removed"})
# add_concept requests of all pages together: a burst of this many, then one per ADD_REFILL_S seconds. Each concept
# costs the daemon detector calls for as long as it lives; a page (or several) adding concepts in a loop would
# otherwise fill the stream with them. Higher lets a user type several concepts at once without waiting.
ADD_BURST = 5
ADD_REFILL_S = 5.0


def check_concept_args(op: str, args: dict) -> None:
    """Raises ValueError, naming the field, unless `args` is a well-formed request of concept op `op`: the daemon's
    own parser and schema (tracker.protocol) judge it, so what the viewer lets through is what the daemon takes."""
    try:
        P.parse_request([P.request(0, op, args)])
    except P.ProtocolError as e:
        raise ValueError(str(e)) from e


@dataclass
class AddRate:
    """A token bucket of add_concept requests: ADD_BURST at once, then one every ADD_REFILL_S seconds."""

    clock: Callable[[], float] = time.monotonic
    tokens: float = ADD_BURST
    last: float = field(default=-math.inf)

    def take(self) -> bool:
        """Whether one more add_concept may go to the daemon now (and counts it)."""
        now = self.clock()
        if self.last != -math.inf:
            self.tokens = min(ADD_BURST, self.tokens + (now - self.last) / ADD_REFILL_S)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def wait_s(self) -> float:
        """Seconds until the next add_concept is accepted."""
        return max(0.0, (1 - self.tokens) * ADD_REFILL_S)


def is_event_topic(topic: bytes, stream: str | None) -> bool:
    """Whether a received topic carries events of `stream` (of any stream when None)."""
    prefix = P.EVENTS_TOPIC + "."
    name = topic.decode("utf-8", "replace")
    return name.startswith(prefix) and (stream is None or name == prefix + stream)


def event_message(body: bytes) -> dict:
    """The page's message for one lifecycle event (the daemon's JSON): its known fields only, type-checked and
    bounded; ValueError if it is not an event."""
    e = json.loads(body)
    if not isinstance(e, dict) or e.get("kind") not in EVENT_KINDS:
        raise ValueError(f"not a lifecycle event: {body[:80]!r}")
    label, score = e.get("label"), e.get("score")
    if not isinstance(e.get("stream"), str) or not P.is_stream_name(e["stream"]):
        raise ValueError(f"an event's stream is not a stream name: {e.get('stream')!r:.80}")
    for name in ("frame", "object"):
        if isinstance(e.get(name), bool) or not isinstance(e.get(name), int):
            raise ValueError(f"an event's {name} is not a whole number: {e.get(name)!r:.80}")
    return {"type": "event", "kind": e["kind"], "stream": e["stream"], "frame": e["frame"], "object": e["object"],
            "label": label[:P.MAX_CONCEPT_TEXT] if isinstance(label, str) else None,
            "score": float(score) if isinstance(score, int | float) and math.isfinite(score) else None}
