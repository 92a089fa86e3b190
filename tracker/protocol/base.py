"""Protocol v1 constants shared by every message: version, topics, default endpoints, limits, errors."""

from __future__ import annotations

import re

PROTOCOL_VERSION = 1
RESULTS_TOPIC = "results"  # PUB topic: "results.<stream>"
PREVIEW_TOPIC = "preview"  # PUB topic: "preview.<stream>"
EVENTS_TOPIC = "events"  # PUB topic: "events.<stream>", concepts' lifecycle events
DEFAULT_RESULTS = "tcp://127.0.0.1:5555"  # PUB: results and previews (loopback only by default)
DEFAULT_COMMANDS = "tcp://127.0.0.1:5556"  # ROUTER: requests and replies
# `samtrack broker`'s own defaults: not the daemon's, so a broker and a daemon on one host never collide
# (clients name the broker with --results/--commands, or the daemons move to other ports).
DEFAULT_BROKER_RESULTS = "tcp://127.0.0.1:5565"
DEFAULT_BROKER_COMMANDS = "tcp://127.0.0.1:5566"

# Limits a request must respect (documented in docs/protocol.md).
MAX_REQUEST_BYTES = 16 << 20  # a full-HD mask as PNG or bits is far below this
# import_state carries a stream's state: ~130 kB per object and prompted frame at 512 px, 0.5 MB at 1024 px,
# so dozens of objects fit; below the 64 MiB at which ZeroMQ drops a message part.
MAX_STATE_BYTES = 48 << 20
MAX_POINTS = 64  # clicks per prompt; more is a client bug, not a user's intent
MAX_OBJECT_ID = 2**31 - 1
MAX_MASK_SIDE = 8192
# A stream name is a topic suffix, a command routing key and a recording's directory name: letters, digits,
# "_", "-", "." (not only dots: "." and ".." are no plain path component), 64 characters at most.
STREAM_NAME = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
MAX_STREAM_NAME = 64
# Concept prompts' limits (add_concept's text, cadence, score, objects) are the concept room's, defined once in
# tracker/concepts/types.py: what the wire accepts is what a concept may be.


def is_stream_name(name: str) -> bool:
    """Whether `name` may name a stream (see STREAM_NAME)."""
    return len(name) <= MAX_STREAM_NAME and re.fullmatch(STREAM_NAME, name) is not None

# Every error code a reply may carry: docs/protocol.md's table says when each is sent (`unreachable` and
# `timeout` only from the viewer to its page).
ERROR_CODES = frozenset({
    "bad_json", "bad_request", "bad_frames", "too_large", "unsupported_version", "unknown_op", "bad_prompt",
    "bad_mask", "frame_out_of_window", "unknown_object", "too_many_objects", "bad_state",
    "unknown_stream", "stream_required", "no_detector", "unknown_concept", "too_many_concepts",
    "stream_unavailable", "too_many_requests", "unreachable", "timeout", "internal",
})


class ProtocolError(Exception):
    """A request or message that cannot be served or read; `code` is the wire error code."""

    def __init__(self, code: str, message: str, request_id: str | int | None = None):
        super().__init__(message)
        self.code, self.message, self.request_id = code, message, request_id


def topic(kind: str, stream: str) -> bytes:
    """The PUB topic of a stream: kind is RESULTS_TOPIC or PREVIEW_TOPIC."""
    return f"{kind}.{stream}".encode()


def subscriptions(stream: str | None, previews: bool) -> list[bytes]:
    """SUB prefixes for one stream (or every stream). A prefix also matches longer stream names
    (results.cam matches results.cam2): check each message with `topic_matches`."""
    kinds = [RESULTS_TOPIC] + ([PREVIEW_TOPIC] if previews else [])
    return [topic(k, stream) if stream else k.encode() for k in kinds]


def topic_matches(received: bytes, stream: str | None) -> bool:
    """Whether a received topic belongs to `stream` exactly (any stream when None)."""
    if stream is None:
        return True
    return received in (topic(RESULTS_TOPIC, stream), topic(PREVIEW_TOPIC, stream))
