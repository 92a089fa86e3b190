"""Requests and replies on the command socket: request schemas, parsing with typed errors, reply frames."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from ..concepts.types import (
    DEFAULT_MAX_OBJECTS,
    DEFAULT_THRESHOLD,
    MAX_CONCEPT_OBJECTS,
    MAX_EVERY,
    MAX_EVERY_S,
    concept_text,
)
from .base import (
    MAX_MASK_SIDE,
    MAX_OBJECT_ID,
    MAX_POINTS,
    MAX_REQUEST_BYTES,
    MAX_STATE_BYTES,
    MAX_STREAM_NAME,
    PROTOCOL_VERSION,
    STREAM_NAME,
    ProtocolError,
)

ObjectId = Annotated[StrictInt, Field(ge=0, le=MAX_OBJECT_ID)]
FrameRef = Annotated[StrictInt, Field(ge=0)] | Literal["latest"]
Point = Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]
# Any integer here: a label other than 0/1 is a bad prompt (checked by the tracker), not a malformed request.
Label = StrictInt


StreamName = Annotated[StrictStr, Field(pattern=STREAM_NAME, max_length=MAX_STREAM_NAME)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    # The stream the op is for: optional on a one-stream daemon, required by ops on a daemon with several.
    stream: StreamName | None = None


class NoArgs(_Args):
    pass


class _Clicks(_Args):
    """Args with clicks: `labels` is a list of the same length as `points` (a malformed request otherwise)."""

    @model_validator(mode="after")
    def _one_label_per_point(self):
        points, labels = getattr(self, "points", None), getattr(self, "labels", None)
        if (points is None) != (labels is None):
            raise ValueError("points and labels come together")
        if points is not None and len(points) != len(labels):
            raise ValueError(f"labels: one per point, got {len(labels)} labels for {len(points)} points")
        return self


class PointsArgs(_Clicks):
    object: ObjectId
    points: Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS)]
    labels: Annotated[list[Label], Field(min_length=1, max_length=MAX_POINTS)]
    frame: FrameRef = "latest"
    clear_old_points: StrictBool = True


class BoxArgs(_Clicks):
    object: ObjectId
    box: Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)]
    points: Annotated[list[Point], Field(max_length=MAX_POINTS)] | None = None
    labels: Annotated[list[Label], Field(max_length=MAX_POINTS)] | None = None
    frame: FrameRef = "latest"


class MaskArgs(_Args):
    object: ObjectId
    encoding: Literal["rle", "bits", "png"]
    size: Annotated[list[Annotated[StrictInt, Field(ge=1, le=MAX_MASK_SIDE)]], Field(min_length=2, max_length=2)]
    frame: FrameRef = "latest"


class ObjectArgs(_Args):
    object: ObjectId


# A concept's text as the concept room takes it (concept_text): surrounding whitespace dropped, 1 to MAX_TEXT characters
# left, no control or format character; a ValueError from it is the field's bad_request.
ConceptText = Annotated[StrictStr, AfterValidator(concept_text)]


class ConceptArgs(_Args):
    """add_concept: a text to find, how often (frames or seconds, at most one; neither: every second), the detection
    score kept and the objects held."""

    text: ConceptText
    every: Annotated[StrictInt, Field(ge=1, le=MAX_EVERY)] | None = None
    every_s: Annotated[FiniteFloat, Field(gt=0, le=MAX_EVERY_S)] | None = None
    threshold: Annotated[FiniteFloat, Field(ge=0, le=1)] = DEFAULT_THRESHOLD
    max_objects: Annotated[StrictInt, Field(ge=1, le=MAX_CONCEPT_OBJECTS)] = DEFAULT_MAX_OBJECTS

    @model_validator(mode="after")
    def _one_cadence(self):
        if self.every is not None and self.every_s is not None:
            raise ValueError("every and every_s: give one of them (frames or seconds), not both")
        return self


class TextArgs(_Args):
    text: ConceptText


# op -> (argument model, number of binary frames after the request)
OPS: dict[str, tuple[type[_Args], int]] = {
    "ping": (NoArgs, 0),
    "add_points": (PointsArgs, 0),
    "add_box": (BoxArgs, 0),
    "add_mask": (MaskArgs, 1),
    "remove_object": (ObjectArgs, 0),
    "reset": (NoArgs, 0),
    "list_objects": (NoArgs, 0),
    "stats": (NoArgs, 0),
    "export_state": (NoArgs, 0),  # replied with the state as a second frame
    "import_state": (NoArgs, 1),
    "add_concept": (ConceptArgs, 0),
    "remove_concept": (TextArgs, 0),
    "list_concepts": (NoArgs, 0),
}
LARGE_OPS = {"import_state": MAX_STATE_BYTES}  # ops whose request may exceed MAX_REQUEST_BYTES, and their limit


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    v: StrictInt
    id: StrictStr | StrictInt = Field(union_mode="left_to_right")
    op: StrictStr
    args: dict[str, Any] = Field(default_factory=dict)


def parse_request(parts: list[bytes]) -> tuple[str | int, str, _Args, list[bytes]]:
    """(id, op, validated args, binary frames) of a request's frames; ProtocolError otherwise.

    Checks run in this order and the first failure is the reply: size (too_large; import_state may be
    larger, and its op is read first to know), frames present
    (bad_frames), JSON (bad_json), envelope (bad_request), version, op, frame count, args. The id
    travels in ProtocolError.request_id once it could be read.
    """
    size = sum(len(p) for p in parts)
    op = _op_of(parts) if size > MAX_REQUEST_BYTES else None
    limit = LARGE_OPS.get(op, MAX_REQUEST_BYTES)
    if size > limit:
        hint = "; a state this large moves as a file (the state directory)" if op in LARGE_OPS else \
            "; send a smaller mask (bits or RLE of the frame's size)"
        raise ProtocolError("too_large", f"request of {size} bytes exceeds {limit} bytes{hint}")
    if not parts:
        raise ProtocolError("bad_frames", "empty message: send the request JSON as the first frame")
    try:
        raw = json.loads(parts[0].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError("bad_json", f"first frame is not UTF-8 JSON: {e}") from e
    rid = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), (str, int)) else None
    try:
        env = Envelope.model_validate(raw)
    except ValidationError as e:
        raise ProtocolError("bad_request", _explain(e, "request"), rid) from e
    if env.v != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version", f"protocol version {env.v} is not supported; "
                                                   f"this daemon speaks {PROTOCOL_VERSION}", rid)
    if env.op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {env.op!r}; ops: {', '.join(OPS)}", rid)
    model, n_frames = OPS[env.op]
    if len(parts) - 1 != n_frames:
        raise ProtocolError("bad_frames", f"{env.op} takes {n_frames} binary frame(s) after the request, "
                                          f"got {len(parts) - 1}", rid)
    try:
        args = model.model_validate(env.args)
    except ValidationError as e:
        raise ProtocolError("bad_request", _explain(e, f"{env.op} args"), rid) from e
    return env.id, env.op, args, parts[1:]


def _op_of(parts: list[bytes]) -> str | None:
    """The op a request names, read only as far as needed to choose its size limit (None if unreadable)."""
    if not parts or len(parts[0]) > MAX_REQUEST_BYTES:
        return None
    try:
        raw = json.loads(parts[0])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return raw.get("op") if isinstance(raw, dict) and isinstance(raw.get("op"), str) else None


def _explain(e: ValidationError, what: str) -> str:
    msgs = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or what
        msgs.append(f"{loc}: {err['msg']}")
    return f"invalid {what}: " + "; ".join(msgs)


def request(rid: str | int, op: str, args: _Args | dict[str, Any] | None = None) -> bytes:
    """The JSON frame of a request (clients): args as the op's schema (unset optional fields left out),
    or as a JSON object relayed from elsewhere (the viewer's page)."""
    fields = args.model_dump(exclude_unset=True) if isinstance(args, _Args) else dict(args or {})
    return json.dumps({"v": PROTOCOL_VERSION, "id": rid, "op": op, "args": fields}).encode()


def reply_ok(rid, result: dict) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "id": rid, "ok": True, "result": result}).encode()


def error_reply(rid, code: str, message: str) -> dict:
    """An error reply as a JSON object (the viewer relays it to its page as is)."""
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": False, "error": {"code": code, "message": message}}


def reply_error(rid, code: str, message: str) -> bytes:
    return json.dumps(error_reply(rid, code, message)).encode()


def reply_with_id(reply: bytes, rid: str | int | None) -> bytes:
    """A reply frame with its id replaced (a broker relays a daemon's reply to the request it renumbered);
    ProtocolError when the frame is not a reply."""
    try:
        data = json.loads(reply)
        data["id"]  # noqa: B018  (a reply has one)
    except (ValueError, TypeError, KeyError) as e:
        raise ProtocolError("bad_json", f"not a reply frame: {e}") from e
    return json.dumps({**data, "id": rid}).encode()


def read_reply(reply: bytes) -> dict:
    """A reply frame as an object: {"id", "ok", "result" or "error"}; ProtocolError when it is not one."""
    try:
        data = json.loads(reply)
        if not isinstance(data, dict) or "id" not in data or "ok" not in data:
            raise ValueError("no id or ok field")
    except ValueError as e:
        raise ProtocolError("bad_json", f"not a reply frame: {e}") from e
    return data
