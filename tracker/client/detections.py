"""Results as supervision.Detections (needs the `supervision` package)."""

from __future__ import annotations

import numpy as np

from .results import Result


def to_detections(result: Result):
    """The result's objects with a mask as supervision.Detections: xyxy, mask, confidence (sigmoid of the
    object score), tracker_id and class_id (both the object id, so supervision's default annotators colour
    and label each object by its id), and data["class_name"] ("object N")."""
    try:
        import supervision as sv
    except ImportError as e:
        raise ImportError("to_detections needs the supervision package: pip install supervision") from e
    objs = [o for o in result.header["objects"] if o["bbox"] is not None and o["id"] in result.masks]
    if not objs:
        return sv.Detections.empty()
    ids = np.array([o["id"] for o in objs], dtype=int)
    return sv.Detections(
        xyxy=np.array([o["bbox"] for o in objs], dtype=np.float32),
        mask=np.stack([result.masks[o["id"]] for o in objs]),
        confidence=np.array([1 / (1 + np.exp(-o["score"])) for o in objs], dtype=np.float32),
        class_id=ids,
        tracker_id=ids,
        data={"class_name": np.array([f"object {i}" for i in ids])},
    )
