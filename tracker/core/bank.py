"""The typed, bounded memory bank of one tracked object."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FrameFeatures:
    """Backbone features of one frame in the feature window."""

    index: int  # the frame's position on the model's timeline (core/timeline.py)
    number: int  # the frame's number in its stream (what results and prompts name)
    index_tensor: torch.Tensor  # the index as a 0-d int64 on the model's device (made there: no host copy)
    height: int
    width: int
    vision_feats: list[torch.Tensor]  # per level [HW, 1, C], as Meta's _prepare_backbone_features
    feat_sizes: list[tuple[int, int]]

    def tensors(self) -> list[torch.Tensor]:
        return [self.index_tensor, *self.vision_feats]


@dataclass
class MemoryEntry:
    """What one frame leaves behind for later frames of one object (Meta's compact output)."""

    frame_index: int
    frame_tensor: torch.Tensor  # frame_index as a 0-d int64 on the model's device: pointer positions are made there
    pred_masks: torch.Tensor  # [1, 1, S/4, S/4] low-res mask logits (after hole filling, if any)
    obj_ptr: torch.Tensor  # [1, C] object pointer
    object_score_logits: torch.Tensor  # [1, 1]
    # [1, mem_dim, S/16, S/16] bfloat16 like Meta's predictor; None while a prompted frame's
    # memory is still to be encoded (Meta encodes it lazily, just before tracking resumes).
    maskmem_features: torch.Tensor | None = None

    def tensors(self) -> list[torch.Tensor]:
        ts = [self.frame_tensor, self.pred_masks, self.obj_ptr, self.object_score_logits]
        return ts + ([self.maskmem_features] if self.maskmem_features is not None else [])


@dataclass
class PointPrompt:
    """Point prompt in model coordinates, as Meta's predictor stores it."""

    coords: torch.Tensor  # [1, P, 2] float32, scaled to the model's image size
    labels: torch.Tensor  # [1, P] int32: 1 positive, 0 negative, 2/3 box corners

    def as_inputs(self) -> dict[str, torch.Tensor]:
        return {"point_coords": self.coords, "point_labels": self.labels}


@dataclass
class ObjectBank:
    """Per-object state: conditioning and recent memories, prompts still pending, tracked frames.

    `cond` and `non_cond` keep insertion order: Meta concatenates memories in that order and the
    order decides the last bits of the result.
    """

    obj_id: int
    cond: dict[int, MemoryEntry] = field(default_factory=dict)
    non_cond: dict[int, MemoryEntry] = field(default_factory=dict)
    # Prompt outputs not yet in memory (Meta's temp_output_dict), by storage kind.
    pending_cond: dict[int, MemoryEntry] = field(default_factory=dict)
    pending_non_cond: dict[int, MemoryEntry] = field(default_factory=dict)
    points: dict[int, PointPrompt] = field(default_factory=dict)  # per frame, inside the window
    tracked: set[int] = field(default_factory=set)  # frames processed by tracking (not by a first prompt)
    cond_dropped: int = 0  # conditioning frames evicted by the cap (Meta would still count them)

    def entry(self, frame_index: int) -> MemoryEntry | None:
        """The output shown for a frame: pending first, then conditioning, then tracked."""
        for d in (self.pending_cond, self.pending_non_cond, self.cond, self.non_cond):
            if frame_index in d:
                return d[frame_index]
        return None

    def flush_pending(self) -> None:
        """Move pending outputs into memory, as Meta's propagate preflight does."""
        for pending, store in ((self.pending_non_cond, self.non_cond), (self.pending_cond, self.cond)):
            store.update(pending)
            pending.clear()
        for t in self.cond:
            self.non_cond.pop(t, None)

    def prune(self, oldest_kept: int, max_cond: int) -> None:
        """Drop what no future frame can read.

        Non-conditioning entries older than `oldest_kept` go; conditioning frames are kept while
        they are among the `max_cond` most recent or still newer than `oldest_kept` (they then
        serve as recent memory and pointers, as in Meta's selection).
        """
        for t in [t for t in self.non_cond if t < oldest_kept]:
            del self.non_cond[t]
        recent = set(sorted(self.cond)[-max_cond:])
        for t in [t for t in self.cond if t < oldest_kept and t not in recent]:
            del self.cond[t]
            self.cond_dropped += 1
        for t in [t for t in self.points if t < oldest_kept]:
            del self.points[t]
        self.tracked = {t for t in self.tracked if t >= oldest_kept}

    def tensors(self) -> list[torch.Tensor]:
        out = []
        for d in (self.cond, self.non_cond, self.pending_cond, self.pending_non_cond):
            for e in d.values():
                out.extend(e.tensors())
        for p in self.points.values():
            out.extend((p.coords, p.labels))
        return out
