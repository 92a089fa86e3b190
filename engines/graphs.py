"""SAM2's per-object pieces of a tracked frame as graphs with tensor inputs only, for compilers (OpenVINO): the
SAM heads (prompt encoder + mask decoder, no prompt: a tracked frame) and the memory encoder (a tracked frame's
mask). They call Meta's own methods with the arguments the tracker gives on a tracked frame, so a traced graph
computes what those calls compute; prompted frames keep Meta's modules (their inputs vary in kind)."""

from __future__ import annotations

import torch

from .base import Sam2Model


class TrackingHeadsGraph(torch.nn.Module):
    """pix_feat [B, C, H, W], high-res features [B, C0, 4H, 4W] and [B, C1, 2H, 2W] -> (low-res mask logits
    [B, 1, 4H, 4W], high-res mask logits [B, 1, 16H, 16W], object pointer [B, C], object score [B, 1])."""

    def __init__(self, model: Sam2Model):
        super().__init__()
        self.model = model
        self.multimask = bool(model._use_multimask(False, None))  # what a tracked frame asks for

    def forward(self, pix_feat: torch.Tensor, high_res0: torch.Tensor, high_res1: torch.Tensor):
        out = self.model._forward_sam_heads(backbone_features=pix_feat, point_inputs=None, mask_inputs=None,
                                            high_res_features=[high_res0, high_res1], multimask_output=self.multimask)
        return out[3], out[4], out[5], out[6]


class TrackedMemoryGraph(torch.nn.Module):
    """A tracked frame's memory: top-level features [HW, B, C], the high-res mask logits [B, 1, S, S] and the
    object score [B, 1] -> the memory features [B, mem_dim, H, W] (Meta's _encode_new_memory, mask not from
    points: sigmoid-scaled)."""

    def __init__(self, model: Sam2Model, feat_size: tuple[int, int]):
        super().__init__()
        self.model, self.feat_size = model, feat_size

    def forward(self, vision_feat: torch.Tensor, high_res_masks: torch.Tensor, object_score_logits: torch.Tensor):
        features, _pos = self.model._encode_new_memory(current_vision_feats=[vision_feat], feat_sizes=[self.feat_size],
                                                       pred_masks_high_res=high_res_masks,
                                                       object_score_logits=object_score_logits, is_mask_from_pts=False)
        return features
