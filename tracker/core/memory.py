"""Memory conditioning of one frame for one object: Meta's `_prepare_memory_conditioned_features`,
forward in time, reading the bounded bank instead of every past frame.

The order of concatenation and every arithmetic step follow sam2_base.py (1.1.0) so that the
result is bit-identical to Meta's predictor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sam2.modeling.sam2_utils import get_1d_sine_pe

from .bank import MemoryEntry, ObjectBank
from .options import TrackerOptions


def select_cond_frames(
    bank: ObjectBank, frame_index: int, cap: int
) -> tuple[dict[int, MemoryEntry], dict[int, MemoryEntry]]:
    """Conditioning frames attended at `frame_index` (selected) and the others (unselected).

    Meta's `select_closest_cond_frames`, made causal (frames after `frame_index` are never
    attended) and told about conditioning frames the cap already evicted: Meta would still count
    them, which switches it from insertion order to closest-first.
    """
    cands = {t: e for t, e in bank.cond.items() if t <= frame_index}
    if len(cands) + bank.cond_dropped <= cap:
        return cands, {}
    selected: dict[int, MemoryEntry] = {}
    before = max((t for t in cands if t < frame_index), default=None)
    if before is not None:
        selected[before] = cands[before]
    if frame_index in cands:  # Meta's "closest at or after"; causal, so only the frame itself
        selected[frame_index] = cands[frame_index]
    rest = sorted((t for t in cands if t not in selected), key=lambda t: abs(t - frame_index))
    selected.update((t, cands[t]) for t in rest[: cap - len(selected)])
    return selected, {t: e for t, e in cands.items() if t not in selected}


@dataclass(frozen=True)
class MemoryInputs:
    """What one object's frame attends to: memory tokens [L, 1, mem_dim], their position encodings,
    and how many of the last tokens are object pointers (RoPE skips them)."""

    memory: torch.Tensor
    memory_pos: torch.Tensor
    n_ptr_tokens: int

    @property
    def group(self) -> tuple[int, int]:
        """Objects with the same group can attend in one batch."""
        return self.memory.shape[0], self.n_ptr_tokens


def gather_memory(
    model: torch.nn.Module,
    opts: TrackerOptions,
    bank: ObjectBank,
    frame_index: int,
    is_init_cond_frame: bool,
    maskmem_pos_enc: torch.Tensor | None,
) -> MemoryInputs | None:
    """The object's memory for this frame, or None when the model skips memory attention for it.

    maskmem_pos_enc: the shared memory position encoding [1, mem_dim, H, W] (None before any memory).
    """
    if opts.num_maskmem == 0 or (is_init_cond_frame and model.directly_add_no_mem_embed):
        return None
    n_ptr_tokens = 0
    if is_init_cond_frame:
        memory = [model.no_mem_embed.expand(1, 1, model.mem_dim)]
        memory_pos = [model.no_mem_pos_enc.expand(1, 1, model.mem_dim)]
    else:
        selected, unselected = select_cond_frames(bank, frame_index, opts.max_cond_frames)
        memory, memory_pos = _spatial_memory(model, opts, bank, frame_index, selected, unselected, maskmem_pos_enc)
        if model.use_obj_ptrs_in_encoder:
            ptrs = _pointer_memory(model, opts, bank, frame_index, selected, unselected)
            if ptrs is not None:
                memory.append(ptrs[0])
                memory_pos.append(ptrs[1])
                n_ptr_tokens = ptrs[0].shape[0]
    return MemoryInputs(torch.cat(memory, dim=0), torch.cat(memory_pos, dim=0), n_ptr_tokens)


def condition_on_memory(
    model: torch.nn.Module,
    opts: TrackerOptions,
    attend,
    vision_feat: torch.Tensor,
    vision_pos: torch.Tensor,
    feat_size: tuple[int, int],
    inputs: list[MemoryInputs | None],
) -> torch.Tensor:
    """The frame's top-level features fused with each object's memory, [N, C, H, W] for N objects.

    attend: Meta's memory_attention call (the model's module, or a compiled one from engines/);
    vision_feat / vision_pos: [HW, 1, C] top-level features and position encoding of the frame.
    Objects whose memories have the same length attend in one batch (one object: Meta's exact call).
    """
    C, (H, W) = model.hidden_dim, feat_size
    out: list[torch.Tensor | None] = [None] * len(inputs)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, m in enumerate(inputs):
        if m is None:
            x = vision_feat if opts.num_maskmem == 0 else vision_feat + model.no_mem_embed
            out[i] = x.permute(1, 2, 0).view(1, C, H, W)
        else:
            groups.setdefault(m.group, []).append(i)
    for (_, n_ptr), idx in groups.items():
        B = len(idx)
        fused = attend(
            curr=[vision_feat.expand(-1, B, -1)],
            curr_pos=[vision_pos.expand(-1, B, -1)],
            memory=torch.cat([inputs[i].memory for i in idx], dim=1),
            memory_pos=torch.cat([inputs[i].memory_pos for i in idx], dim=1),
            num_obj_ptr_tokens=n_ptr,
        )
        fused = fused.permute(1, 2, 0).view(B, C, H, W)
        for k, i in enumerate(idx):
            out[i] = fused[k:k + 1]
    # One object: Meta's (non-contiguous) layout as is; a copy would change the decoder's rounding.
    return out[0] if len(out) == 1 else torch.cat(out, dim=0)


def _spatial_memory(model, opts, bank, frame_index, selected, unselected, pos_enc):
    """Mask memories [HW, 1, mem_dim] each: selected conditioning frames (t_pos 0), then recent frames
    oldest first."""
    nm, r = opts.num_maskmem, opts.memory_temporal_stride_for_eval
    t_pos_and_prevs: list[tuple[int, MemoryEntry | None]] = [(0, e) for e in selected.values()]
    for t_pos in range(1, nm):
        t_rel = nm - t_pos  # frames before the current one
        if t_rel == 1:
            prev = frame_index - 1
        else:  # every r-th frame, nearest first
            prev = ((frame_index - 2) // r) * r - (t_rel - 2) * r
        t_pos_and_prevs.append((t_pos, bank.non_cond.get(prev, unselected.get(prev))))
    memory, memory_pos = [], []
    for t_pos, prev in t_pos_and_prevs:
        if prev is None:
            continue
        # Stored bf16 like Meta; Meta's cat with fp32 pointers promotes them to fp32 exactly.
        memory.append(prev.maskmem_features.flatten(2).permute(2, 0, 1).float())
        enc = pos_enc.flatten(2).permute(2, 0, 1)
        memory_pos.append(enc + model.maskmem_tpos_enc[nm - t_pos - 1])
    return memory, memory_pos


def _pointer_memory(model, opts, bank, frame_index, selected, unselected):
    """Object pointers and their temporal encodings, [tokens, 1, mem_dim] each, or None when there is none."""
    max_ptrs, C = opts.max_obj_ptrs_in_encoder, model.hidden_dim
    cond = selected
    if model.only_obj_ptrs_in_the_past_for_eval:
        cond = {t: e for t, e in selected.items() if t <= frame_index}
    # Meta's pointer position is frame_index - t (t_diff for recent frames; the signed or absolute
    # difference for conditioning frames, equal here: the tracker is causal, t <= frame_index).
    entries = list(cond.values())
    for t_diff in range(1, max_ptrs):
        t = frame_index - t_diff
        if t < 0:
            break
        e = bank.non_cond.get(t, unselected.get(t))
        if e is not None:
            entries.append(e)
    if not entries:
        return None
    obj_ptrs = torch.stack([e.obj_ptr for e in entries], dim=0)
    mem_dim = model.mem_dim
    if model.add_tpos_enc_to_obj_ptrs:
        tpos_dim = C if model.proj_tpos_enc_in_obj_ptrs else mem_dim
        # The int64 positions Meta builds from a Python list, made on the device from each entry's frame index
        # tensor: no copy from the host (and no wait for the GPU) per object and frame.
        obj_pos = frame_index - torch.stack([e.frame_tensor for e in entries])
        obj_pos = get_1d_sine_pe(obj_pos / (max_ptrs - 1), dim=tpos_dim)
        obj_pos = model.obj_ptr_tpos_proj(obj_pos)
        obj_pos = obj_pos.unsqueeze(1)
    else:
        obj_pos = obj_ptrs.new_zeros(len(entries), 1, mem_dim)
    if mem_dim < C:  # a pointer becomes C // mem_dim tokens
        obj_ptrs = obj_ptrs.reshape(-1, 1, C // mem_dim, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        obj_pos = obj_pos.repeat_interleave(C // mem_dim, dim=0)
    return obj_ptrs, obj_pos
