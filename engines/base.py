"""The backend seams (typed protocols) and what every backend needs from the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

# The device types each backend runs on (None: wherever torch runs). A new backend adds one line here.
BACKEND_DEVICES: dict[str, frozenset[str] | None] = {
    "torch": None,
    # CPU only: on a GPU, torch (bf16) and TensorRT serve, and onnxruntime-gpu would copy through the host
    # (docs/engines.md, "ONNX Runtime and GPUs").
    "onnxruntime": frozenset({"cpu"}),
    "tensorrt": frozenset({"cuda"}),
    "openvino": frozenset({"cpu"}),  # OpenVINO's CPU plugin (its GPU plugin is Intel's, not CUDA)
}
BACKENDS = tuple(BACKEND_DEVICES)
PARTS = ("encoder", "memory_attention", "heads", "memory_encoder")  # the pieces of the model a backend may run

# sam2 ships no type information: its model (SAM2Base) is typed as Any for the type checker.
Sam2Model = Any


class EncoderBackend(Protocol):
    """Backbone features of one preprocessed frame, in the layout of sam2's `forward_image`."""

    name: str

    def __call__(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]: ...


class MemoryAttentionBackend(Protocol):
    """Meta's `memory_attention` call: a frame's features fused with an object's memory."""

    def __call__(self, curr: list[torch.Tensor], curr_pos: list[torch.Tensor], memory: torch.Tensor,
                 memory_pos: torch.Tensor, num_obj_ptr_tokens: int = 0) -> torch.Tensor: ...


class HeadsBackend(Protocol):
    """Meta's `_forward_sam_heads` call (prompt encoder and mask decoder): its 7 outputs; the tracker reads the
    last four (best low-res mask, high-res mask, object pointer, object score)."""

    def __call__(self, backbone_features: torch.Tensor, point_inputs: dict | None = None,
                 mask_inputs: torch.Tensor | None = None, high_res_features: list[torch.Tensor] | None = None,
                 multimask_output: bool = False) -> tuple: ...


class MemoryEncoderBackend(Protocol):
    """Meta's `_encode_new_memory` call: (memory features, [memory position encoding])."""

    def __call__(self, current_vision_feats: list[torch.Tensor], feat_sizes: list[tuple[int, int]],
                 pred_masks_high_res: torch.Tensor, object_score_logits: torch.Tensor,
                 is_mask_from_pts: bool) -> tuple[torch.Tensor, list[torch.Tensor]]: ...


@dataclass(frozen=True)
class Engines:
    """What a tracker calls for each piece of the model: a backend's compiled parts, Meta's modules elsewhere."""

    name: str  # the backend: "torch" is Meta's modules throughout
    encoder: EncoderBackend | Callable
    memory_attention: MemoryAttentionBackend | Callable
    heads: HeadsBackend | Callable
    memory_encoder: MemoryEncoderBackend | Callable
    compiled: tuple[str, ...] = ()  # the parts the backend runs; the others are Meta's modules

    @classmethod
    def of(cls, model: Sam2Model, name: str = "torch", **parts) -> Engines:
        """Meta's own calls for every piece not given in `parts` (encoder, memory_attention, heads,
        memory_encoder)."""
        own = {"encoder": model.forward_image, "memory_attention": model.memory_attention,
               "heads": model._forward_sam_heads, "memory_encoder": model._encode_new_memory}
        return cls(name, **{**own, **parts}, compiled=tuple(p for p in PARTS if p in parts and name != "torch"))

    @property
    def placement(self) -> dict[str, str]:
        """Which backend runs each part (what a replay must build again to reproduce the results)."""
        return {p: self.name if p in self.compiled else "torch" for p in PARTS}


def image_size_of(model: Sam2Model) -> int:
    """The model's fixed input size (sam2 keeps it as a plain attribute)."""
    return int(getattr(model, "image_size"))  # noqa: B009  (typed as Any for the type checker)


def position_encodings(model: Sam2Model, image_size: int) -> list[torch.Tensor]:
    """vision_pos_enc for this resolution: constant, so computed once (Meta recomputes it per frame). The neck's
    sine encoding reads only its input's shape: the FPN levels are image_size / 4, / 8, ... (image sizes are
    multiples of 32), the lowest `scalp` of them dropped as Meta's ImageEncoder does; no encoder run needed."""
    encoder = model.image_encoder
    levels = len(encoder.neck.backbone_channel_list)
    with torch.inference_mode():
        pos = [encoder.neck.position_encoding(torch.zeros(1, encoder.neck.d_model, image_size // (4 << i),
                                                          image_size // (4 << i), device=model.device)).clone()
               for i in range(levels)]
    return pos[:levels - encoder.scalp] if encoder.scalp > 0 else pos
