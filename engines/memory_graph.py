"""SAM2's memory attention as an exportable graph: the rotary position encoding in real arithmetic
(cos/sin instead of complex numbers, which ONNX lacks) and the memory length free.

Inputs are split into spatial memory (rotated) and object-pointer memory (not rotated), so the number
of each is read from input shapes, never baked into the graph. Same layers, same order as Meta's
MemoryAttention / MemoryAttentionLayer / RoPEAttention; batch size 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Sam2Model

INPUT_NAMES = ["curr", "curr_pos", "memory", "memory_pos", "pointers", "pointers_pos"]
OUTPUT_NAMES = ["fused"]


def rotate_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [1, heads, r * HW, D], its head dimensions ordered (even ones, then odd ones), rotated by the angles of
    cos/sin [HW, D] (each angle twice), repeated r times: x * cos + (-x_odd, x_even) * sin."""
    b, h, n, d = x.shape
    hw = cos.shape[0]
    grid = x.reshape(b, h, -1, hw, d)
    half = torch.cat([-grid[..., d // 2:], grid[..., : d // 2]], dim=-1)
    return (grid * cos + half * sin).reshape(b, h, n, d)


def _pairs_apart(linear: torch.nn.Linear, heads: int) -> torch.nn.Linear:
    """A copy of a query or key projection whose output dimensions come per head as (even ones, then odd ones):
    Meta rotates dimension pairs (2i, 2i+1); in this order a pair is (i, i + D/2), rotated by multiplies and a
    half swap. Queries and keys reordered alike keep every attention score (the dot products' terms reorder)."""
    d = linear.out_features // heads
    order = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])
    rows = torch.cat([h * d + order for h in range(heads)]).to(linear.weight.device)
    out = torch.nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None,
                          device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(linear.weight[rows])
        if linear.bias is not None:
            out.bias.copy_(linear.bias[rows])
    return out


class MemoryAttentionGraph(torch.nn.Module):
    """curr, curr_pos [HW, 1, C]; memory, memory_pos [Ls, 1, M]; pointers, pointers_pos [Lp, 1, M]
    -> the frame's features fused with memory [HW, 1, C]. The rotary encoding is real arithmetic: multiplies by
    cos/sin tables and a half swap (no complex numbers, no rotation matrices), on query and key projections whose
    dimensions are reordered (`_pairs_apart`)."""

    cos: torch.Tensor  # [HW, D] buffers: Meta's RoPE angles, each twice (once per half)
    sin: torch.Tensor

    def __init__(self, model: Sam2Model, image_size: int):
        super().__init__()
        self.attn = model.memory_attention
        side = image_size // 16
        # Meta recomputes its complex frequencies for the actual grid (side given as a float); sam2 builds
        # them on the CPU, the graph runs where the model is.
        first = self.attn.layers[0].self_attn
        cis = first.compute_cis(end_x=math.sqrt(side * side), end_y=math.sqrt(side * side)).to(model.device)
        self.register_buffer("cos", torch.cat([cis.real, cis.real], dim=-1).contiguous(), persistent=False)
        self.register_buffer("sin", torch.cat([cis.imag, cis.imag], dim=-1).contiguous(), persistent=False)
        attns = [a for layer in self.attn.layers for a in (layer.self_attn, layer.cross_attn_image)]
        self.q = torch.nn.ModuleList(_pairs_apart(a.q_proj, a.num_heads) for a in attns)
        self.k = torch.nn.ModuleList(_pairs_apart(a.k_proj, a.num_heads) for a in attns)

    def _attend(self, i: int, attn, q, k_rot, k_plain, v) -> torch.Tensor:
        """The i-th RoPEAttention call (self and cross attention of each layer in turn): keys in k_rot are rotated,
        keys in k_plain (pointers) are not."""
        q = rotate_half(attn._separate_heads(self.q[i](q), attn.num_heads), self.cos, self.sin)
        keys = [rotate_half(attn._separate_heads(self.k[i](k_rot), attn.num_heads), self.cos, self.sin)]
        if k_plain is not None:
            keys.append(attn._separate_heads(self.k[i](k_plain), attn.num_heads))
        k = torch.cat(keys, dim=2)
        v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return attn.out_proj(attn._recombine_heads(out))

    def forward(self, curr, curr_pos, memory, memory_pos, pointers, pointers_pos):
        ma = self.attn
        out = curr + 0.1 * curr_pos if ma.pos_enc_at_input else curr
        if ma.batch_first:
            out, curr_pos = out.transpose(0, 1), curr_pos.transpose(0, 1)
            memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
            pointers, pointers_pos = pointers.transpose(0, 1), pointers_pos.transpose(0, 1)
        values = torch.cat([memory, pointers], dim=1)
        for j, layer in enumerate(ma.layers):
            x = layer.norm1(out)
            qk = x + curr_pos if layer.pos_enc_at_attn else x
            out = out + layer.dropout1(self._attend(2 * j, layer.self_attn, qk, qk, None, x))
            x = layer.norm2(out)
            q = x + curr_pos if layer.pos_enc_at_cross_attn_queries else x
            k_mem, k_ptr = (memory + memory_pos, pointers + pointers_pos) if layer.pos_enc_at_cross_attn_keys \
                else (memory, pointers)
            out = out + layer.dropout2(self._attend(2 * j + 1, layer.cross_attn_image, q, k_mem, k_ptr, values))
            x = layer.norm3(out)
            out = out + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))
        out = ma.norm(out)
        return out.transpose(0, 1) if ma.batch_first else out


def export_memory_attention(model: Sam2Model, image_size: int, path) -> None:
    """Write the memory attention (fp32, dynamic memory and pointer counts) to an ONNX file and check it."""
    import warnings

    import onnx

    from .export import OPSET

    graph = MemoryAttentionGraph(model, image_size).eval()
    hw, c, m = (image_size // 16) ** 2, model.hidden_dim, model.mem_dim
    dev = model.device
    dummy = (torch.zeros(hw, 1, c, device=dev), torch.zeros(hw, 1, c, device=dev),
             torch.zeros(2 * hw, 1, m, device=dev), torch.zeros(2 * hw, 1, m, device=dev),
             torch.zeros(8, 1, m, device=dev), torch.zeros(8, 1, m, device=dev))
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(graph, dummy, str(tmp), opset_version=OPSET, dynamo=False,
                          input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes={"memory": {0: "n_memory"}, "memory_pos": {0: "n_memory"},
                                        "pointers": {0: "n_pointers"}, "pointers_pos": {0: "n_pointers"}})
    onnx.checker.check_model(str(tmp))
    tmp.replace(path)
