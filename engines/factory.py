"""Choosing a backend by name: the only module that knows every backend (they import base, never this)."""

from __future__ import annotations

from pathlib import Path

from .base import BACKENDS, EncoderBackend, MemoryAttentionBackend, Sam2Model
from .onnxruntime_backend import OrtEncoder, OrtMemoryAttention
from .tensorrt_backend import TensorRTEncoder
from .torch_backend import TorchEncoder


def make_encoder(name: str, model: Sam2Model, cache_dir: Path | None = None, **options) -> EncoderBackend:
    """The backend `name` for this model; compiled backends build (or reuse from the cache) their artefact."""
    if name == "torch":
        return TorchEncoder(model, **options)
    if name == "onnxruntime":
        return OrtEncoder.for_model(model, cache_dir=cache_dir, **options)
    if name == "tensorrt":
        return TensorRTEncoder.for_model(model, cache_dir=cache_dir, **options)
    raise ValueError(f"unknown encoder backend {name!r}; one of {', '.join(BACKENDS)}")


def make_memory_attention(name: str, model: Sam2Model, cache_dir: Path | None = None,
                          **options) -> MemoryAttentionBackend:
    """The memory attention for backend `name`: ONNX Runtime's graph for `onnxruntime` (measured faster
    on CPU, docs/benchmarks.md), Meta's torch module otherwise."""
    if name == "onnxruntime":
        return OrtMemoryAttention.for_model(model, cache_dir=cache_dir, **options)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")
    return model.memory_attention
