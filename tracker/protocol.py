"""samtrack wire protocol, version 1 (specified in docs/protocol.md): message layout, request
schemas, error codes and mask encodings. Shared by the daemon and every Python client."""

from __future__ import annotations

import json
import math
import struct
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, StrictBool, StrictInt, StrictStr, ValidationError

PROTOCOL_VERSION = 1
RESULTS_TOPIC = "results"  # PUB topic prefix: "results.<stream>"
PREVIEW_TOPIC = "preview"  # PUB topic prefix: "preview.<stream>"
MASK_ENCODINGS = ("rle", "bits", "png", "none")

# Limits a request must respect (documented in docs/protocol.md).
MAX_REQUEST_BYTES = 16 << 20  # a full-HD mask as PNG or bits is far below this
MAX_POINTS = 64  # clicks per prompt; more is a client bug, not a user's intent
MAX_OBJECT_ID = 2**31 - 1
MAX_MASK_SIDE = 8192


class ProtocolError(Exception):
    """A request that cannot be served; `code` is the wire error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# ---- requests ---------------------------------------------------------------------------------

ObjectId = Annotated[StrictInt, Field(ge=0, le=MAX_OBJECT_ID)]
FrameRef = Annotated[StrictInt, Field(ge=0)] | Literal["latest"]
Point = Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]
Label = Literal[0, 1]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NoArgs(_Args):
    pass


class PointsArgs(_Args):
    object: ObjectId
    points: Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS)]
    labels: Annotated[list[Label], Field(min_length=1, max_length=MAX_POINTS)]
    frame: FrameRef = "latest"
    clear_old_points: StrictBool = True


class BoxArgs(_Args):
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
}


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    v: StrictInt
    id: StrictStr | StrictInt = Field(union_mode="left_to_right")
    op: StrictStr
    args: dict[str, Any] = Field(default_factory=dict)


def parse_request(parts: list[bytes]) -> tuple[str | int | None, str, _Args, list[bytes]]:
    """(id, op, validated args, binary frames) of a request's frames; ProtocolError otherwise.

    The id is returned even when a later check fails (via ProtocolError.request_id), so replies
    can carry it back.
    """
    if sum(len(p) for p in parts) > MAX_REQUEST_BYTES:
        raise ProtocolError("too_large", f"request of {sum(len(p) for p in parts)} bytes exceeds "
                                         f"{MAX_REQUEST_BYTES} bytes")
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
        raise _with_id(ProtocolError("bad_request", _explain(e, "request")), rid) from e
    if env.v != PROTOCOL_VERSION:
        raise _with_id(ProtocolError("unsupported_version", f"protocol version {env.v} is not supported; "
                                                            f"this daemon speaks {PROTOCOL_VERSION}"), rid)
    if env.op not in OPS:
        raise _with_id(ProtocolError("unknown_op", f"unknown op {env.op!r}; ops: {', '.join(OPS)}"), rid)
    model, n_frames = OPS[env.op]
    if len(parts) - 1 != n_frames:
        raise _with_id(ProtocolError("bad_frames", f"{env.op} takes {n_frames} binary frame(s) after the "
                                                   f"request, got {len(parts) - 1}"), rid)
    try:
        args = model.model_validate(env.args)
    except ValidationError as e:
        raise _with_id(ProtocolError("bad_request", _explain(e, f"{env.op} args")), rid) from e
    return env.id, env.op, args, parts[1:]


def _with_id(err: ProtocolError, rid) -> ProtocolError:
    err.request_id = rid
    return err


def _explain(e: ValidationError, what: str) -> str:
    msgs = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or what
        msgs.append(f"{loc}: {err['msg']}")
    return f"invalid {what}: " + "; ".join(msgs)


def request(rid: str | int, op: str, args: dict | None = None) -> bytes:
    """The JSON frame of a request (clients)."""
    return json.dumps({"v": PROTOCOL_VERSION, "id": rid, "op": op, "args": args or {}}).encode()


def reply_ok(rid, result: dict) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "id": rid, "ok": True, "result": result}).encode()


def reply_error(rid, code: str, message: str) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "id": rid, "ok": False,
                       "error": {"code": code, "message": message}}).encode()


# ---- masks --------------------------------------------------------------------------------------


def encode_mask(mask: np.ndarray, encoding: str) -> bytes:
    """A bool HxW mask as the bytes of one frame in the given encoding."""
    if encoding == "rle":
        from pycocotools import mask as mask_util

        return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
    if encoding == "bits":
        return np.packbits(mask.reshape(-1)).tobytes()
    if encoding == "png":
        import cv2

        ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255)
        return buf.tobytes()
    if encoding == "none":
        return b""
    raise ValueError(f"unknown mask encoding {encoding!r}; one of {MASK_ENCODINGS}")


def decode_mask(data: bytes, encoding: str, height: int, width: int) -> np.ndarray:
    """The bool HxW mask in a frame; ProtocolError("bad_mask") if the bytes do not decode to that size."""
    if encoding == "rle":
        counts = rle_counts(data)
        if sum(counts) != height * width:
            raise ProtocolError("bad_mask", f"RLE covers {sum(counts)} pixels, size {height}x{width} has "
                                            f"{height * width}")
        from pycocotools import mask as mask_util

        return mask_util.decode({"size": [height, width], "counts": data}).astype(bool)
    if encoding == "bits":
        need = math.ceil(height * width / 8)
        if len(data) != need:
            raise ProtocolError("bad_mask", f"bits mask of {height}x{width} needs {need} bytes, got {len(data)}")
        return np.unpackbits(np.frombuffer(data, np.uint8))[: height * width].reshape(height, width).astype(bool)
    if encoding == "png":
        if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
            raise ProtocolError("bad_mask", "mask frame is not a PNG file")
        w, h = struct.unpack(">II", data[16:24])
        if (h, w) != (height, width):  # checked before decoding: no decompression bombs
            raise ProtocolError("bad_mask", f"PNG mask is {w}x{h}, expected {width}x{height}")
        import cv2

        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ProtocolError("bad_mask", "PNG mask does not decode")
        return img > 127
    raise ProtocolError("bad_mask", f"unknown mask encoding {encoding!r}")


def rle_counts(data: bytes) -> list[int]:
    """The run lengths of a COCO compressed RLE string, checked (so pycocotools never overruns)."""
    counts, i = [], 0
    try:
        while i < len(data):
            x, k, more = 0, 0, True
            while more:
                c = data[i] - 48
                if not 0 <= c < 64:
                    raise ValueError(f"byte {data[i]} is not an RLE character")
                x |= (c & 0x1F) << (5 * k)
                more = bool(c & 0x20)
                i += 1
                k += 1
                if not more and c & 0x10:
                    x |= -1 << (5 * k)
                if k > 7:
                    raise ValueError("run length too long")
            if len(counts) > 2:
                x += counts[-2]
            counts.append(x)
    except (IndexError, ValueError) as e:
        raise ProtocolError("bad_mask", f"mask frame is not a COCO RLE string: {e}") from e
    if any(c < 0 for c in counts):
        raise ProtocolError("bad_mask", "RLE has a negative run length")
    return counts
