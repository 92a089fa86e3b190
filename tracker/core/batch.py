"""Several trackers' next frames with the image encoder run once for all of them: a daemon's streams
share one model, and on a GPU one batch of N frames costs far less than N single frames."""

from __future__ import annotations

import numpy as np
import torch

from .clock import Span
from .precision import compute_context
from .preprocess import check_frame
from .results import FrameResult
from .tracker import Tracker


def step_batch(trackers: list[Tracker], frames: list[np.ndarray],
               numbers: list[int | None] | None = None) -> list[FrameResult | Exception]:
    """`tracker.step(frame, number)` for each pair (numbers default to each tracker's next), the encoder called
    once on the stacked frames; each entry is the tracker's result or what it raised. A failure belongs to its
    own tracker: a bad frame, or a failure after the encoder, leaves the others' results standing; when the
    batched encoder itself fails, each frame is stepped alone. The trackers must share one model and encoder
    (`Tracker.share`); results equal one-at-a-time steps within the arithmetic differences of batched kernels
    (1e-5 in fp32, tested)."""
    first = trackers[0]
    numbers = numbers or [None] * len(trackers)
    if any(t.encoder is not first.encoder or t.precision != first.precision for t in trackers):
        raise ValueError("step_batch needs trackers sharing one encoder and precision (Tracker.share)")
    out: list[FrameResult | Exception | None] = [None] * len(trackers)
    todo = []
    for i, f in enumerate(frames):
        try:
            todo.append((i, check_frame(f)))
        except Exception as e:  # noqa: BLE001  (returned as this tracker's outcome)
            out[i] = e
    clock = first.clock
    try:
        t0 = clock.mark()
        with torch.inference_mode():
            images = torch.cat([trackers[i].preprocess(f) for i, f in todo])
            t1 = clock.mark()
            with compute_context(first.precision, first.device):
                batched = first.encoder(images)
        t2 = clock.mark()
    except Exception:  # noqa: BLE001  (one frame may be the cause: each goes alone, and fails alone)
        for i, f in todo:
            out[i] = _alone(trackers[i], f, numbers[i])
        return out
    share = 1.0 / max(len(todo), 1)  # each frame is charged its part of the batch
    for k, (i, f) in enumerate(todo):
        try:
            out[i] = trackers[i].step_encoded(f, _item(batched, k), Span(t0, t1, share), Span(t1, t2, share),
                                              numbers[i])
        except Exception as e:  # noqa: BLE001  (this tracker did not take the frame; the others did)
            out[i] = e
    return out


def _alone(tracker: Tracker, frame: np.ndarray, number: int | None) -> FrameResult | Exception:
    try:
        return tracker.step(frame, number)
    except Exception as e:  # noqa: BLE001  (returned as this tracker's outcome)
        return e


def _item(out, i: int):
    """Element i of the batch in the encoder's output (a dict of tensors and lists of tensors)."""
    if isinstance(out, torch.Tensor):
        return out[i:i + 1]
    if isinstance(out, dict):
        return {k: _item(v, i) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_item(v, i) for v in out)
    return out
