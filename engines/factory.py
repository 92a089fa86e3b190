"""Choosing a backend by name: the only module that knows every backend (they import base, never this)."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import BACKEND_DEVICES, BACKENDS, PARTS, EncoderBackend, Engines, MemoryAttentionBackend, Sam2Model
from .onnxruntime_backend import OrtEncoder, OrtMemoryAttention
from .tensorrt_backend import TensorRTEncoder
from .torch_backend import TorchEncoder


def check_backend_device(name: str, device: str | torch.device) -> None:
    """Raise ValueError, saying what to choose instead, when backend `name` cannot run on `device`
    (BACKEND_DEVICES); called at start-up, before any model is built."""
    if name not in BACKEND_DEVICES:
        raise ValueError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")
    kind = torch.device(device).type
    allowed = BACKEND_DEVICES[name]
    if allowed is None or kind in allowed:
        return
    others = [b for b, kinds in BACKEND_DEVICES.items() if kinds is None or kind in kinds]
    raise ValueError(f"backend {name} runs on {' or '.join(sorted(allowed))} devices, not on {device}: pass "
                     f"--device {sorted(allowed)[0]} (or [model] device), or a backend for {kind}: "
                     f"{', '.join(others)}")


def make_engines(name: str, model: Sam2Model, cache_dir: Path | None = None, threads: int | None = None,
                 parts: tuple[str, ...] | None = None) -> Engines:
    """Backend `name`'s parts for this model (compiled backends build, or take from the cache, their artefacts);
    Meta's modules for the pieces a backend does not compile. parts: OpenVINO's parts to compile (all: None)."""
    check_backend_device(name, model.device)
    if name == "openvino":
        from .openvino_backend import OpenVINOEngines

        ov = OpenVINOEngines.for_model(model, cache_dir=cache_dir, threads=threads, parts=parts or PARTS)
        compiled = {"encoder": ov.encoder, "memory_attention": ov.memory_attention, "heads": ov.heads,
                    "memory_encoder": ov.memory_encoder}
        return Engines.of(model, name, **{k: v for k, v in compiled.items() if v is not None})
    if name == "onnxruntime":
        return Engines.of(model, name, encoder=OrtEncoder.for_model(model, cache_dir=cache_dir, threads=threads),
                          memory_attention=OrtMemoryAttention.for_model(model, cache_dir=cache_dir, threads=threads))
    if name == "tensorrt":
        return Engines.of(model, name, encoder=TensorRTEncoder.for_model(model, cache_dir=cache_dir))
    return Engines.of(model, name, encoder=TorchEncoder(model))


def make_encoder(name: str, model: Sam2Model, cache_dir: Path | None = None, **options) -> EncoderBackend:
    """The image encoder of backend `name` alone (compiled backends build, or reuse from the cache, its artefact)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown encoder backend {name!r}; one of {', '.join(BACKENDS)}")
    check_backend_device(name, model.device)
    if name == "onnxruntime":
        return OrtEncoder.for_model(model, cache_dir=cache_dir, **options)
    if name == "openvino":
        from .openvino_backend import OpenVINOEngines

        encoder = OpenVINOEngines.for_model(model, cache_dir=cache_dir, parts=("encoder",), **options).encoder
        assert encoder is not None  # asked for
        return encoder
    if name == "tensorrt":
        return TensorRTEncoder.for_model(model, cache_dir=cache_dir, **options)
    return TorchEncoder(model, **options)


def make_memory_attention(name: str, model: Sam2Model, cache_dir: Path | None = None,
                          **options) -> MemoryAttentionBackend:
    """The memory attention of backend `name` alone: OpenVINO's or ONNX Runtime's graph, Meta's module otherwise."""
    check_backend_device(name, model.device)
    if name == "onnxruntime":
        return OrtMemoryAttention.for_model(model, cache_dir=cache_dir, **options)
    if name == "openvino":
        from .openvino_backend import OpenVINOEngines

        attention = OpenVINOEngines.for_model(model, cache_dir=cache_dir, parts=("memory_attention",),
                                              **options).memory_attention
        assert attention is not None  # asked for
        return attention
    return model.memory_attention
