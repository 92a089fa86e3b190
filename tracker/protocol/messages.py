"""What the daemon writes: result, preview and end messages on the PUB socket, and the result objects
of replies (status, stats, prompts, object lists). Every wire field is named here and nowhere else."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..percentiles import Percentiles
from .base import EVENTS_TOPIC, PREVIEW_TOPIC, PROTOCOL_VERSION, RESULTS_TOPIC, topic
from .masks import encode_mask

if TYPE_CHECKING:  # the results' types only: a broker relays messages without torch
    from ..core.results import FrameResult, ObjectResult


@dataclass(frozen=True)
class FrameInfo:
    """The source frame a result belongs to."""

    source_index: int
    width: int
    height: int
    pts_ns: int | None
    capture_ns: int  # CLOCK_MONOTONIC when the frame reached samtrack


@dataclass(frozen=True)
class SourceStatus:
    kind: str
    live: bool
    width: int | None
    height: int | None
    fps: float | None
    dropped: int
    reconnects: int
    connected: bool
    error: str | None = None  # why it could not start (the stream is down; the daemon's other streams run)


@dataclass(frozen=True)
class DaemonStatus:
    """What ping (and stats) report about the daemon."""

    stream: str
    frame: int | None
    source: SourceStatus
    uptime_s: float
    window: list[int]  # [first, last] frame a prompt may name; [] before the first frame
    metrics_port: int | None
    precision: str  # "fp32" (exact) or "bf16" (fast path)
    streams: list[str]  # every stream the daemon serves
    state: StateStatus | None = None  # None: no state directory
    backend: str = "torch"  # the engines: "torch" is Meta's modules (exact with precision fp32)


@dataclass(frozen=True)
class StateStatus:
    """The stream's state on disk (`[state] dir`)."""

    path: str
    restored_objects: list[int] | None  # what a restart restored (None: nothing)
    restored_frame: int | None  # the first frame number after the restore
    writes: int
    write_errors: int
    last_bytes: int
    set_aside: list[str]  # files refused at start (renamed, kept)


@dataclass(frozen=True)
class ObjectTag:
    """What a concept says about an object it found: the concept's text, the last matching detection's score and
    where its lifecycle stands ("tentative", "confirmed", "lost"). Clicked objects have none."""

    label: str
    detection_score: float | None
    status: str


Tags = Mapping[int, ObjectTag]  # object id -> its tag; objects absent are clicked ones
NO_TAGS: Tags = MappingProxyType({})


@dataclass(frozen=True)
class ConceptInfo:
    """One concept of a stream, as list_concepts reports it."""

    text: str
    every: int | None
    every_s: float | None
    threshold: float
    max_objects: int
    stream: str
    objects: list[int]
    detector_ms_p50: float | None
    calls: int


@dataclass(frozen=True)
class Event:
    """One lifecycle change of an object a concept found (published on events.<stream>)."""

    kind: str  # appeared, confirmed, lost, refound, retracted, removed
    frame: int
    obj_id: int
    label: str
    score: float | None


@dataclass(frozen=True)
class DetectorStats:
    """A stream's detector calls for stats: how many, their cost, how old their frames were when applied."""

    name: str
    calls: int
    ms: Percentiles | None  # None before the first call
    lag_frames: Percentiles | None  # frames between a call's frame and the newest when applied
    too_old: int  # results whose frame had left the window: nothing applied
    errors: int  # calls that failed
    apply_ms: Percentiles | None  # the tracking thread's time applying answers (masks, association, prompts)
    dropped: int  # answers dropped unapplied: more waited than the daemon keeps
    alive: bool  # the detector's process is ready for calls (False from its death or a hung call until restarted)
    pid: int | None  # that process, while alive
    restarts: int  # processes started again after one died or hung
    hung: int  # calls without an answer within their deadline (their process killed and started again)
    last_error: str | None  # how the last process ended, or why starting it again failed; None before any


def _us(ns: int | None) -> int | None:
    """Nanoseconds as integer microseconds: below 2^53 for centuries, so exact in JavaScript numbers."""
    return None if ns is None else ns // 1000


def object_summary(o: ObjectResult, tags: Tags = NO_TAGS) -> dict:
    """An object's entry in results and replies (without its mask), with its concept's tag fields."""
    return {**summary_fields(o.obj_id, o.score, o.bbox, o.area), **tag_fields(tags.get(o.obj_id))}


def tag_fields(tag: ObjectTag | None) -> dict:
    """`label`, `detection_score`, `status` of an object (null for a clicked object)."""
    if tag is None:
        return {"label": None, "detection_score": None, "status": None}
    score = None if tag.detection_score is None else round(float(tag.detection_score), 4)
    return {"label": tag.label, "detection_score": score, "status": tag.status}


def summary_fields(obj_id: int, score: float, bbox, area: int) -> dict:
    """An object's entry in results and replies (without its mask)."""
    return {"id": obj_id, "present": bool(score > 0), "score": round(float(score), 4),
            "bbox": list(bbox) if bbox is not None else None, "area": int(area)}


def result_message(stream: str, seq: int, frame: FrameInfo, result: FrameResult, timings_ms: dict[str, float],
                   dropped: int, mask_encoding: str, publish_dropped: int = 0, revision: int = 0,
                   age_ms: float = 0.0, tags: Tags = NO_TAGS) -> list[bytes]:
    """[topic, header, masks...] of one answered frame: the model's result, or masks carried by motion from a key
    frame (`source`, `key_frame`, `age_ms`); `revision` counts the answers of this frame sent before; `tags` the
    concepts' labels of the objects they found."""
    masks, objects = [], []
    for o in result.objects.values():
        d = object_summary(o, tags)
        if mask_encoding != "none":
            d["mask"] = {"encoding": mask_encoding, "frame": len(masks)}
            # "bits" is the layout the tracker already packed on its device
            masks.append(o.packed_mask.tobytes() if mask_encoding == "bits" else encode_mask(o.mask, mask_encoding))
        objects.append(d)
    publish_ns, publish_unix_ns = time.monotonic_ns(), time.time_ns()
    header = {
        "v": PROTOCOL_VERSION, "type": "result", "stream": stream, "seq": seq,
        "frame": result.frame_index, "source_index": frame.source_index,
        "width": frame.width, "height": frame.height, "pts_ns": frame.pts_ns,
        "capture_ns": frame.capture_ns, "publish_ns": publish_ns, "publish_unix_ns": publish_unix_ns,
        "capture_us": _us(frame.capture_ns), "publish_us": _us(publish_ns), "publish_unix_us": _us(publish_unix_ns),
        "timings_ms": timings_ms, "dropped": dropped, "publish_dropped": publish_dropped, "objects": objects,
        "source": result.source, "key_frame": _key_frame(result), "age_ms": round(age_ms, 3), "revision": revision,
    }
    return [topic(RESULTS_TOPIC, stream), json.dumps(header).encode(), *masks]


def _key_frame(result: FrameResult) -> int | None:
    """The model frame a result's masks come from: its own for a model result; for one carried by motion, the key
    frame (None while no model result was carried yet)."""
    return result.key if result.source == "model" else result.key_frame


def preview_message(stream: str, seq: int, frame_index: int, frame: FrameInfo, jpeg: bytes) -> list[bytes]:
    """[topic, header, jpeg] of one preview picture."""
    header = {"v": PROTOCOL_VERSION, "type": "preview", "stream": stream, "seq": seq, "frame": frame_index,
              "width": frame.width, "height": frame.height, "capture_ns": frame.capture_ns,
              "capture_us": _us(frame.capture_ns), "encoding": "jpeg"}
    return [topic(PREVIEW_TOPIC, stream), json.dumps(header).encode(), jpeg]


def end_message(stream: str, seq: int, last_frame: int | None, reason: str) -> list[bytes]:
    """[topic, header]: the stream is over (the daemon exits after this)."""
    now = time.time_ns()
    header = {"v": PROTOCOL_VERSION, "type": "end", "stream": stream, "seq": seq, "frame": last_frame,
              "reason": reason, "publish_unix_ns": now, "publish_unix_us": _us(now)}
    return [topic(RESULTS_TOPIC, stream), json.dumps(header).encode()]


def status_result(s: DaemonStatus) -> dict:
    """The result of ping; stats carries all of it too."""
    src = s.source
    return {
        "pong": True, "protocol": PROTOCOL_VERSION, "stream": s.stream, "frame": s.frame,
        "source": {"kind": src.kind, "live": src.live, "width": src.width, "height": src.height, "fps": src.fps,
                   "dropped": src.dropped, "reconnects": src.reconnects, "connected": src.connected,
                   "error": src.error},
        "uptime_s": round(s.uptime_s, 3), "window": list(s.window), "metrics_port": s.metrics_port,
        "precision": s.precision, "backend": s.backend, "streams": list(s.streams), "state": _state(s.state),
    }


def _state(st: StateStatus | None) -> dict | None:
    if st is None:
        return None
    restored = None if st.restored_objects is None else {"objects": list(st.restored_objects),
                                                         "frame": st.restored_frame}
    return {"path": st.path, "restored": restored, "writes": st.writes, "write_errors": st.write_errors,
            "last_bytes": st.last_bytes, "set_aside": list(st.set_aside)}


def state_result(objects: list[int], next_frame: int, size: int) -> dict:
    """export_state / import_state: the objects in the state, its first frame number, its size in bytes."""
    return {"objects": list(objects), "next_frame": next_frame, "bytes": size}


def overview_result(per_stream: dict[str, dict]) -> dict:
    """ping (or stats) naming no stream on a daemon with several: each stream's own result."""
    return {"pong": True, "protocol": PROTOCOL_VERSION, "streams": list(per_stream), "per_stream": per_stream}


def stats_overview_result(per_stream: dict[str, dict], unrouted_requests: int, unrouted_errors: dict[str, int]) -> dict:
    """stats naming no stream on a daemon with several: each stream's stats, and the daemon's totals
    (requests that named no stream it serves are counted in the totals only)."""
    errors: dict[str, int] = dict(unrouted_errors)
    for st in per_stream.values():
        for code, n in st["errors"].items():
            errors[code] = errors.get(code, 0) + n
    total = {"frames": sum(st["frames"] for st in per_stream.values()),
             "fps": round(sum(st["fps"] for st in per_stream.values()), 3),
             "motion_frames": sum(st["motion_frames"] for st in per_stream.values()),
             "answered_fps": round(sum(st["answered_fps"] for st in per_stream.values()), 3),
             "objects": sum(st["objects"] for st in per_stream.values()),
             "prompts": sum(st["prompts"] for st in per_stream.values()),
             "requests": unrouted_requests + sum(st["requests"] for st in per_stream.values()),
             "errors": errors, "held_bytes": sum(st["held_bytes"] for st in per_stream.values())}
    return {**overview_result(per_stream), "total": total}


def stats_result(status: DaemonStatus, *, frames: int, frame_errors: int, prompts: int, requests: int,
                 errors: dict[str, int], fps: float, timings_ms: dict[str, Percentiles], objects: int,
                 held_bytes: int, retracked_frames: int, publish_dropped: int, motion_frames: int = 0,
                 answered_fps: float = 0.0, between_key_frames: str = "drop",
                 detector: DetectorStats | None = None) -> dict:
    """stats: `frames`/`fps` count the model's frames (key frames); `motion_frames`, `answered_fps` the frames
    answered by motion between them and every answer a second."""
    return {
        **status_result(status),
        "frames": frames, "frame_errors": frame_errors, "prompts": prompts, "requests": requests,
        "errors": dict(errors), "fps": round(fps, 3), "retracked_frames": retracked_frames,
        "motion_frames": motion_frames, "answered_fps": round(answered_fps, 3),
        "between_key_frames": between_key_frames, "publish_dropped": publish_dropped,
        "timings_ms": {k: _percentiles(p) for k, p in timings_ms.items()},
        "objects": objects, "held_bytes": held_bytes, "detector": detector_result(detector),
    }


def prompt_result(obj_id: int, result: FrameResult, retracked: int, elapsed_ms: float, latest: int,
                  tags: Tags = NO_TAGS) -> dict:
    """The reply to add_points / add_box / add_mask (`latest`: the model's newest frame once the prompt was
    applied; results whose key_frame is later hold the prompted object)."""
    return {"frame": result.frame_index, "object": object_summary(result.objects[obj_id], tags),
            "objects": [object_summary(o, tags) for o in result.objects.values()],
            "retracked": retracked, "elapsed_ms": round(elapsed_ms, 3), "latest": latest}


def objects_result(frame: int | None, results: list[ObjectResult | int], tags: Tags = NO_TAGS) -> dict:
    """list_objects: each object's entry on the latest frame (only its id and tag when it has none there)."""
    return {"frame": frame, "objects": [{"id": r, **tag_fields(tags.get(r))} if isinstance(r, int)
                                        else object_summary(r, tags) for r in results]}


def concept_fields(text: str, every: int | None, every_s: float | None, threshold: float, max_objects: int,
                   stream: str) -> dict:
    """A concept's request as add_concept answers it (`every_s` null when the cadence is in frames)."""
    return {"text": text, "every": every, "every_s": every_s, "threshold": threshold, "max_objects": max_objects,
            "stream": stream}


def concept_result(concept: dict) -> dict:
    """add_concept: the concept as it now stands (a text the stream had already: its new settings)."""
    return {"concept": concept}


def concepts_result(concepts: list[ConceptInfo]) -> dict:
    """list_concepts: each concept of the stream, its objects and its detector calls."""
    return {"concepts": [{**concept_fields(c.text, c.every, c.every_s, c.threshold, c.max_objects, c.stream),
                          "objects": list(c.objects), "detector_ms_p50": c.detector_ms_p50, "calls": c.calls}
                         for c in concepts]}


def event_message(stream: str, seq: int, event: Event) -> list[bytes]:
    """[topic, header] of one lifecycle event on events.<stream>."""
    header = {"v": PROTOCOL_VERSION, "type": "event", "seq": seq, "kind": event.kind, "stream": stream,
              "frame": event.frame, "object": event.obj_id, "label": event.label,
              "score": None if event.score is None else round(float(event.score), 4)}
    return [topic(EVENTS_TOPIC, stream), json.dumps(header).encode()]


def detector_result(d: DetectorStats | None) -> dict | None:
    """stats' `detector`: null without a detector."""
    if d is None:
        return None
    return {"name": d.name, "calls": d.calls, "errors": d.errors, "too_old": d.too_old, "dropped": d.dropped,
            "ms": _percentiles(d.ms), "lag_frames": _percentiles(d.lag_frames), "apply_ms": _percentiles(d.apply_ms),
            "alive": d.alive, "pid": d.pid, "restarts": d.restarts, "hung": d.hung, "last_error": d.last_error}


def _percentiles(p: Percentiles | None) -> dict | None:
    if p is None:
        return None
    return {"p50": p.p50, "p95": p.p95, "p99": p.p99, "max": p.max, "n": p.n}


def ids_result(ids: list[int]) -> dict:
    """remove_object / reset: the objects still tracked."""
    return {"objects": list(ids)}


def result_record(result: FrameResult) -> dict:
    """One frame of `samtrack track --masks` (a JSON line): each object's entry with its mask as COCO RLE
    (`{"size": [H, W], "counts": str}`, what pycocotools' mask.decode reads), and where its masks come from
    (`source` "model" or "motion", `key_frame`)."""
    objects = []
    for o in result.objects.values():
        rle = encode_mask(o.mask, "rle").decode("ascii")
        objects.append({**summary_fields(o.obj_id, o.score, o.bbox, o.area),
                        "mask": {"size": [o.height, o.width], "counts": rle}})
    return {"frame": result.frame_index, "source": result.source, "key_frame": _key_frame(result), "objects": objects}

