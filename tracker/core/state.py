"""What a tracker needs to go on tracking after a restart, and its bytes: the frame counter and every object's
conditioning memories (the frames it was prompted on) exactly as the bank keeps them. Recent memories are
not kept: after a restore each object is found again from its prompted appearance, as after an occlusion.

The bytes are a torch file read with `weights_only=True` (no code runs on load): {"format", "meta" (JSON
text: the layout below and whatever identity the caller adds: model, weights digest, size, precision),
"tensors" (name -> tensor)}."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import torch

from ..errors import SamtrackError, TooManyObjectsError
from .bank import MemoryEntry

STATE_FORMAT = 1
# Frame numbers a state may carry: exact in every JSON client (JavaScript's safe integers) and far from int64's
# end, which the tracker's frame tensors must never reach (285,000 years at 1000 fps).
MAX_FRAME = 2**53 - 1
# Frame numbers a stream still hands out after a state is taken (reservations ahead, then years of frames: 2^40 is
# 1,100 years at 30 fps): a state nearer MAX_FRAME would be refused at the next restart, after its numbers grew.
FRAME_HEADROOM = 2**40


class StateError(SamtrackError, ValueError):
    """Bytes that are not a tracker state this samtrack reads, or a state that does not fit the tracker."""

    code = "bad_state"


@dataclass(frozen=True)
class ObjectState:
    """One object: its conditioning frames' memories in the bank's order, and how many the cap evicted
    (Meta's selection counts them)."""

    obj_id: int
    cond: dict[int, MemoryEntry]  # position -> entry with its memory encoded; pred_masks empty (never read again)
    cond_dropped: int


@dataclass(frozen=True)
class TrackerState:
    next_frame: int  # the first frame number after the state (frames before it can no longer be prompted)
    objects: tuple[ObjectState, ...]
    maskmem_pos: torch.Tensor | None  # the memory position encoding (a constant per resolution)
    # The first position after the state on the model's timeline (core/timeline.py), which conditioning frames are
    # placed on; None: next_frame (the model ran on every frame, states written before key frames existed).
    next_position: int | None = None

    @property
    def position(self) -> int:
        return self.next_frame if self.next_position is None else self.next_position

    @property
    def object_ids(self) -> list[int]:
        return [o.obj_id for o in self.objects]


def encode_state(state: TrackerState, identity: dict) -> bytes:
    """The state's bytes, with `identity` (JSON-able) in its metadata."""
    tensors: dict[str, torch.Tensor] = {}
    objects = []
    for o in state.objects:
        for t, e in o.cond.items():
            for field in ("maskmem_features", "obj_ptr", "object_score_logits"):
                tensors[f"{o.obj_id}/{t}/{field}"] = getattr(e, field).detach().cpu().contiguous()
        objects.append({"id": o.obj_id, "frames": list(o.cond), "cond_dropped": o.cond_dropped})
    if state.maskmem_pos is not None:
        tensors["maskmem_pos"] = state.maskmem_pos.detach().cpu().contiguous()
    meta = {**identity, "format": STATE_FORMAT, "next_frame": state.next_frame, "next_position": state.position,
            "objects": objects}
    buf = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "meta": json.dumps(meta), "tensors": tensors}, buf)
    return buf.getvalue()


def read_meta(data: bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a state's bytes; StateError when they are not one (no code runs on load)."""
    try:
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        meta = json.loads(raw["meta"])
        tensors = raw["tensors"]
        fmt = raw["format"]
    except Exception as e:  # noqa: BLE001  (truncated, corrupt, not a torch file: all the same to the caller)
        raise StateError(f"not a samtrack tracker state ({type(e).__name__}: {e})") from e
    if fmt != STATE_FORMAT or not isinstance(meta, dict) or not isinstance(tensors, dict):
        raise StateError(f"tracker state format {fmt!r}; this samtrack reads {STATE_FORMAT}")
    return meta, tensors


def _count(value, what: str) -> int:
    """A frame number, id or count of a state: an int in 0..MAX_FRAME (no bool, float or text)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FRAME:
        raise StateError(f"the state's {what} is {value!r}; an integer in 0..{MAX_FRAME} was expected")
    return value


def _tensor(tensors: dict, name: str, device: torch.device) -> torch.Tensor:
    x = tensors[name]
    if not isinstance(x, torch.Tensor):
        raise StateError(f"the state's {name} is a {type(x).__name__}, not a tensor")
    return x.to(device)


def decode_state(meta: dict, tensors: dict[str, torch.Tensor], device: torch.device) -> TrackerState:
    """The state laid out by `meta` (from `read_meta`), its tensors on `device`; StateError if incomplete or if a
    number in it is not an integer in range."""
    try:
        next_frame = _count(meta["next_frame"], "next_frame")
        objects = []
        for o in meta["objects"]:
            obj_id = _count(o["id"], "object id")
            cond = {}
            for t in o["frames"]:
                t = _count(t, f"object {obj_id}'s frame number")
                e = {f: _tensor(tensors, f"{obj_id}/{t}/{f}", device) for f in ("maskmem_features", "obj_ptr",
                                                                                 "object_score_logits")}
                index = torch.tensor(t, dtype=torch.int64, device=device)
                cond[t] = MemoryEntry(t, index, torch.zeros(1, 1, 0, 0, device=device), e["obj_ptr"],
                                      e["object_score_logits"], e["maskmem_features"])
            objects.append(ObjectState(obj_id, cond, _count(o["cond_dropped"], f"object {obj_id}'s cond_dropped")))
        pos = _tensor(tensors, "maskmem_pos", device) if "maskmem_pos" in tensors else None
        position = meta.get("next_position")
        return TrackerState(next_frame, tuple(objects), pos,
                            None if position is None else _count(position, "next_position"))
    except StateError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StateError(f"incomplete tracker state: {type(e).__name__} {e}") from e


def fitted(state: TrackerState, model: torch.nn.Module, max_objects: int, precision: str) -> TrackerState:
    """The state checked against a tracker (its model's shapes, its object cap; every value finite, every
    memory before the state's first frame, frame numbers in 0..MAX_FRAME), its tensors in the dtypes the
    tracker's own entries have: a state from elsewhere (an import, a file) can be neither malformed nor larger
    than what a client could prompt."""
    if not 0 <= state.next_frame <= MAX_FRAME - FRAME_HEADROOM:
        raise StateError(f"the state's next frame {state.next_frame} is outside 0..{MAX_FRAME - FRAME_HEADROOM} "
                         "(numbers must be left to go on with)")
    if len(state.objects) > max_objects:
        raise TooManyObjectsError(f"the state holds {len(state.objects)} objects, more than this stream's "
                                  f"max_objects ({max_objects}): raise [memory] max_objects to take it")
    h = int(model.image_size) // 16
    shapes = {"maskmem_features": (1, model.mem_dim, h, h), "obj_ptr": (1, model.hidden_dim),
              "object_score_logits": (1, 1)}
    dtypes = {"maskmem_features": torch.bfloat16, "obj_ptr": torch.float32,  # as the bank keeps them
              "object_score_logits": torch.float32 if precision == "fp32" else torch.bfloat16}
    ids = [o.obj_id for o in state.objects]
    if len(set(ids)) != len(ids) or any(not 0 <= i < 2**31 for i in ids):
        raise StateError(f"the state's object ids are not distinct ids in 0..2^31-1: {ids}")
    objects = []
    for o in state.objects:
        if not o.cond or not 0 <= o.cond_dropped <= state.next_frame:
            raise StateError(f"object {o.obj_id} has no prompted frame in the state, or {o.cond_dropped} evicted "
                             f"ones (more than its {state.next_frame} frames)")
        cond = {}
        for t, e in o.cond.items():
            values = {name: getattr(e, name) for name in shapes}
            bad = [name for name, x in values.items() if x is None or tuple(x.shape) != shapes[name]
                   or not x.is_floating_point() or not bool(torch.isfinite(x.float()).all())]
            if bad or not 0 <= t < state.position:
                raise StateError(f"object {o.obj_id}'s memory of frame {t} does not fit this tracker: "
                                 f"{', '.join(bad) or 'frame number'} (shapes expected {shapes}, frames before "
                                 f"{state.position})")
            cast = {name: x.to(dtypes[name]) for name, x in values.items()}
            cond[t] = MemoryEntry(t, e.frame_tensor, e.pred_masks, cast["obj_ptr"], cast["object_score_logits"],
                                  cast["maskmem_features"])
        objects.append(ObjectState(o.obj_id, cond, o.cond_dropped))
    pos = state.maskmem_pos
    if pos is not None:
        # float32 or bfloat16, what memory encoders return (another dtype fails every later step); fp32 takes float32
        if (tuple(pos.shape) != (1, model.mem_dim, h, h) or pos.dtype not in (torch.float32, torch.bfloat16)
                or not bool(torch.isfinite(pos.float()).all())):
            raise StateError(f"the state's memory position encoding does not fit this tracker ({tuple(pos.shape)} "
                             f"{pos.dtype}; expected {(1, model.mem_dim, h, h)}, finite float32 or bfloat16)")
        pos = pos.float() if precision == "fp32" else pos
    if not 0 <= state.position <= state.next_frame:
        raise StateError(f"the state's timeline position {state.position} is not within 0..{state.next_frame} "
                         "(its next frame number)")
    return TrackerState(state.next_frame, tuple(objects), pos, state.next_position)
