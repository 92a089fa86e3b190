"""The encoder seam and the factory choosing a backend by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

BACKENDS = ("torch", "onnxruntime", "tensorrt")

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


def make_encoder(name: str, model: Sam2Model, cache_dir: Path | None = None, **options) -> EncoderBackend:
    """The backend `name` for this model; compiled backends build (or reuse from the cache) their artefact."""
    if name == "torch":
        from .torch_backend import TorchEncoder

        return TorchEncoder(model, **options)
    if name == "onnxruntime":
        from .onnxruntime_backend import OrtEncoder

        return OrtEncoder.for_model(model, cache_dir=cache_dir, **options)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTEncoder

        return TensorRTEncoder.for_model(model, cache_dir=cache_dir, **options)
    raise ValueError(f"unknown encoder backend {name!r}; one of {', '.join(BACKENDS)}")


def make_memory_attention(name: str, model: Sam2Model, cache_dir: Path | None = None,
                          **options) -> MemoryAttentionBackend:
    """The memory attention for backend `name`: ONNX Runtime's graph for `onnxruntime` (measured faster
    on CPU, docs/benchmarks.md), Meta's torch module otherwise."""
    if name == "onnxruntime":
        from .onnxruntime_backend import OrtMemoryAttention

        return OrtMemoryAttention.for_model(model, cache_dir=cache_dir, **options)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")
    return model.memory_attention
