"""The backend seams (typed protocols) and what every backend needs from the model."""

from __future__ import annotations

from typing import Any, Protocol

import torch

# The device types each backend runs on (None: wherever torch runs). A new backend adds one line here.
BACKEND_DEVICES: dict[str, frozenset[str] | None] = {
    "torch": None,
    # CPU only: on a GPU, torch (bf16) and TensorRT serve, and onnxruntime-gpu would copy through the host
    # (docs/engines.md, "ONNX Runtime and GPUs").
    "onnxruntime": frozenset({"cpu"}),
    "tensorrt": frozenset({"cuda"}),
}
BACKENDS = tuple(BACKEND_DEVICES)

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


def image_size_of(model: Sam2Model) -> int:
    """The model's fixed input size (sam2 keeps it as a plain attribute)."""
    return int(getattr(model, "image_size"))  # noqa: B009  (typed as Any for the type checker)


def position_encodings(model: Sam2Model, image_size: int) -> list[torch.Tensor]:
    """vision_pos_enc for this resolution: constant, so computed once (Meta recomputes it per frame)."""
    with torch.inference_mode():
        dummy = torch.zeros(1, 3, image_size, image_size, device=model.device)
        return [p.clone() for p in model.image_encoder(dummy)["vision_pos_enc"]]
