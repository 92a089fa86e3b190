"""What the tracker returns for a frame: per-object logits, mask, score, box and area."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ObjectResult:
    """One object on one frame, at the frame's resolution."""

    obj_id: int
    logits: np.ndarray  # HxW float32: Meta's video_res_masks for this object
    score: float  # object score logit (> 0: the model sees the object)
    mask: np.ndarray = field(repr=False)  # HxW bool, logits > 0
    bbox: tuple[int, int, int, int] | None  # (x0, y0, x1, y1) inclusive pixel bounds, None if empty
    area: int  # pixels in mask

    @property
    def present(self) -> bool:
        return self.score > 0


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent per stage of one step (all objects together for the per-object stages)."""

    preprocess: float = 0.0  # resize + normalize
    encoder: float = 0.0  # image encoder (backbone + FPN)
    track: float = 0.0  # memory attention + SAM heads
    memory_encoder: float = 0.0  # encoding this frame's masks into memory
    postprocess: float = 0.0  # upsampling logits to frame size, masks, boxes

    def as_ms(self) -> dict[str, float]:
        return {k: round(v * 1000.0, 3) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class FrameResult:
    """Every tracked object's result on one frame."""

    frame_index: int
    objects: dict[int, ObjectResult]
    times: StageTimes = field(default_factory=StageTimes)


def make_result(frame_index: int, low_res: dict[int, tuple[torch.Tensor, torch.Tensor]], height: int,
                width: int) -> FrameResult:
    """Upsample each object's low-res logits [1, 1, s, s] to HxW (bilinear, like Meta) and summarize."""
    objects = {}
    if low_res:
        ids = list(low_res)
        masks = torch.cat([low_res[i][0] for i in ids], dim=0)
        if masks.shape[-2:] != (height, width):
            masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
        for k, obj_id in enumerate(ids):
            logits = masks[k, 0].float().cpu().numpy()
            objects[obj_id] = object_result(obj_id, logits, float(low_res[obj_id][1].reshape(-1)[0]))
    return FrameResult(frame_index, objects)


def object_result(obj_id: int, logits: np.ndarray, score: float) -> ObjectResult:
    mask = logits > 0
    area = int(mask.sum())
    bbox = None
    if area:
        ys = np.flatnonzero(mask.any(axis=1))
        xs = np.flatnonzero(mask.any(axis=0))
        bbox = (int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1]))
    return ObjectResult(obj_id, logits, score, mask, bbox, area)
