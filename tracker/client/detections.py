"""Results as supervision.Detections (needs the `supervision` package)."""

from __future__ import annotations

import numpy as np

from .results import Result


def to_detections(result: Result):
    """The result as supervision.Detections (xyxy, mask, tracker_id, confidence); needs `supervision`."""
    try:
        import supervision as sv
    except ImportError as e:
        raise ImportError("to_detections needs the supervision package: pip install supervision") from e
    objs = [o for o in result.header["objects"] if o["bbox"] is not None and o["id"] in result.masks]
    if not objs:
        return sv.Detections.empty()
    return sv.Detections(
        xyxy=np.array([o["bbox"] for o in objs], dtype=np.float32),
        mask=np.stack([result.masks[o["id"]] for o in objs]),
        confidence=np.array([1 / (1 + np.exp(-o["score"])) for o in objs], dtype=np.float32),
        tracker_id=np.array([o["id"] for o in objs]),
    )
