"""What the tracker returns for a frame: per-object mask, score, box and area, made where the logits are.

Upsampling, threshold, box, area and bit-packing run on the model's device for all objects at once;
only the packed masks and a few numbers are copied to the host. The full-resolution float logits are
computed only when `ObjectResult.logits` is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

# Bit weights of one packed byte, most significant first (numpy's packbits order).
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


@dataclass(frozen=True)
class ObjectResult:
    """One object on one frame, at the frame's resolution."""

    obj_id: int
    score: float  # object score logit (> 0: the model sees the object)
    bbox: tuple[int, int, int, int] | None  # (x0, y0, x1, y1) inclusive pixel bounds, None if empty
    area: int  # pixels in mask
    packed_mask: np.ndarray = field(repr=False)  # the HxW mask as np.packbits(mask.reshape(-1)) bytes
    height: int
    width: int
    # [1, 1, s, s] low-res logits on the model's device; None for a mask the model did not make on this frame
    # (carried by motion from a key frame, tracker/motion/)
    low_res: torch.Tensor | None = field(repr=False)

    @property
    def present(self) -> bool:
        return self.score > 0

    @cached_property
    def mask(self) -> np.ndarray:
        """HxW bool: logits > 0."""
        bits = np.unpackbits(self.packed_mask, count=self.height * self.width)
        return bits.reshape(self.height, self.width).view(bool)

    @cached_property
    def logits(self) -> np.ndarray:
        """HxW float32: Meta's video_res_masks for this object (computed on first use); only for model masks."""
        if self.low_res is None:
            raise ValueError(f"object {self.obj_id}'s mask was carried by motion: it has no logits")
        return _upsample(self.low_res, self.height, self.width)[0, 0].cpu().numpy()


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent per stage of one step (all objects together for the per-object stages)."""

    preprocess: float = 0.0  # resize + normalize
    encoder: float = 0.0  # image encoder (backbone + FPN)
    track: float = 0.0  # memory attention + SAM heads
    memory_encoder: float = 0.0  # encoding this frame's masks into memory
    bookkeeping: float = 0.0  # gathering each object's memory, updating the banks: outside the model's calls
    postprocess: float = 0.0  # masks, boxes, areas on the device and their copy to the host

    def as_ms(self) -> dict[str, float]:
        return {k: round(v * 1000.0, 3) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class FrameResult:
    """Every tracked object's result on one frame."""

    frame_index: int
    objects: dict[int, ObjectResult]
    times: StageTimes = field(default_factory=StageTimes)
    source: str = "model"  # "model": the model ran on this frame; "motion": masks carried from key_frame
    key_frame: int | None = None  # the model frame the masks come from (None: this one)

    @property
    def key(self) -> int:
        """The model frame whose masks these are (this frame for a model result)."""
        return self.frame_index if self.key_frame is None else self.key_frame


def _upsample(low_res: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Low-res logits [N, 1, s, s] at frame size in float32 (bilinear, as Meta's predictor)."""
    x = low_res.float()
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x


def pack_bits(masks: torch.Tensor) -> torch.Tensor:
    """Bool [N, L] -> uint8 [N, ceil(L / 8)], each row as np.packbits packs it (MSB first, zero-padded)."""
    n, length = masks.shape
    pad = -length % 8
    x = F.pad(masks.to(torch.uint8), (0, pad)).view(n, -1, 8)
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=masks.device)
    return (x * weights).sum(dim=-1, dtype=torch.uint8)


def make_result(frame_index: int, low_res: dict[int, tuple[torch.Tensor, torch.Tensor]], height: int,
                width: int) -> FrameResult:
    """Each object's low-res logits [1, 1, s, s] and score [1, 1] summarized at frame size HxW."""
    if not low_res:
        return FrameResult(frame_index, {})
    ids = list(low_res)
    lows = [low_res[i][0] for i in ids]
    masks = _upsample(torch.cat(lows, dim=0), height, width)[:, 0] > 0  # [N, H, W] on the device
    rows, cols = masks.any(dim=2), masks.any(dim=1)

    def first(x: torch.Tensor) -> torch.Tensor:  # index of the first True per row (argmax: first maximum)
        return x.to(torch.uint8).argmax(dim=1)

    numbers = torch.stack([masks.sum(dim=(1, 2)), first(cols), first(rows), width - 1 - first(cols.flip(1)),
                           height - 1 - first(rows.flip(1))], dim=1)
    scores = torch.cat([low_res[i][1].reshape(1) for i in ids]).float()
    packed = pack_bits(masks.reshape(len(ids), -1)).cpu().numpy()
    numbers, scores = numbers.cpu().tolist(), scores.cpu().tolist()  # one small copy each
    objects = {}
    for k, obj_id in enumerate(ids):
        area, x0, y0, x1, y1 = numbers[k]
        objects[obj_id] = ObjectResult(obj_id, scores[k], (x0, y0, x1, y1) if area else None, area, packed[k],
                                       height, width, lows[k])
    return FrameResult(frame_index, objects)
