"""samtrack wire protocol, version 1 (specified in docs/protocol.md): the one place that names wire
fields. Requests and replies (requests.py), published messages and reply results (messages.py), mask
encodings (masks.py), CurveZMQ keys (curve.py), topics, endpoints and limits (base.py; a concept's limits are the
concept room's, tracker/concepts/types.py)."""

from ..concepts.types import MAX_TEXT as MAX_CONCEPT_TEXT
from .base import (
    DEFAULT_COMMANDS,
    DEFAULT_RESULTS,
    ERROR_CODES,
    EVENTS_TOPIC,
    MAX_MASK_SIDE,
    MAX_OBJECT_ID,
    MAX_POINTS,
    MAX_REQUEST_BYTES,
    MAX_STATE_BYTES,
    MAX_STREAM_NAME,
    PREVIEW_TOPIC,
    PROTOCOL_VERSION,
    RESULTS_TOPIC,
    STREAM_NAME,
    ProtocolError,
    is_stream_name,
    subscriptions,
    topic,
    topic_matches,
)
from .masks import MASK_ENCODINGS, decode_mask, encode_mask, rle_counts
from .requests import (
    OPS,
    BoxArgs,
    ConceptArgs,
    MaskArgs,
    NoArgs,
    ObjectArgs,
    PointsArgs,
    TextArgs,
    error_reply,
    parse_request,
    read_reply,
    reply_error,
    reply_ok,
    reply_with_id,
    request,
)

__all__ = [
    "DEFAULT_COMMANDS", "DEFAULT_RESULTS", "ERROR_CODES", "EVENTS_TOPIC", "MASK_ENCODINGS", "MAX_CONCEPT_TEXT",
    "MAX_MASK_SIDE", "MAX_OBJECT_ID", "MAX_POINTS", "MAX_REQUEST_BYTES", "MAX_STATE_BYTES", "MAX_STREAM_NAME", "OPS",
    "PREVIEW_TOPIC", "PROTOCOL_VERSION", "RESULTS_TOPIC", "STREAM_NAME", "BoxArgs", "ConceptArgs", "MaskArgs",
    "NoArgs", "ObjectArgs", "PointsArgs", "ProtocolError", "TextArgs", "decode_mask", "encode_mask", "error_reply",
    "is_stream_name", "parse_request", "read_reply", "reply_error", "reply_ok", "reply_with_id", "request",
    "rle_counts", "subscriptions", "topic", "topic_matches",
]
