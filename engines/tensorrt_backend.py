"""TensorRT engine of the same ONNX encoder: built once per GPU/precision (cached), run on CUDA tensors
on the current stream. Thin on purpose: the graph is the one verified through ONNX Runtime."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .base import Sam2Model, image_size_of, position_encodings
from .cache import ArtefactCache, ArtefactKey
from .export import OUTPUT_NAMES
from .onnxruntime_backend import export_cached, onnx_key

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 4 << 30  # builder scratch memory: enough for Hiera-L tactics at 1024 px


def tensorrt_available() -> str | None:
    """None when TensorRT can run here, else why not (for skips and errors)."""
    try:
        import tensorrt as trt
    except ImportError:
        return "the tensorrt package is not installed (see docs/engines.md)"
    if not hasattr(trt, "Builder"):
        return "only TensorRT type stubs are installed, not TensorRT itself"
    if not torch.cuda.is_available():
        return "TensorRT needs a CUDA GPU and none is available"
    return None


def build_engine(onnx_path: Path, plan_path: Path, precision: str = "fp16") -> Path:
    """Parse the ONNX encoder and serialize a TensorRT plan (LayerNorm kept in fp32 under fp16)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):  # LayerNorm overflows in fp16: keep it (and its output) fp32
            layer = network.get_layer(i)
            if layer.type == trt.LayerType.NORMALIZATION or "LayerNorm" in layer.name:
                layer.precision = trt.float32
                layer.set_output_type(0, trt.float32)
    profile = _profile(builder, network)
    if profile is not None:
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    plan_path.write_bytes(bytes(plan))
    return plan_path


def _profile(builder: Any, network: Any) -> Any:
    """An optimization profile for inputs with dynamic dimensions (min = opt = max at the export size)."""
    dynamic = [network.get_input(i) for i in range(network.num_inputs) if -1 in tuple(network.get_input(i).shape)]
    if not dynamic:
        return None
    profile = builder.create_optimization_profile()
    for t in dynamic:
        shape = tuple(d if d > 0 else 1 for d in t.shape)
        profile.set_shape(t.name, shape, shape, shape)
    return profile


class TensorRTEncoder:
    """Runs a TensorRT plan of the encoder on CUDA tensors, on torch's current stream."""

    name = "tensorrt"

    def __init__(self, plan_path: Path, pos_enc: list[torch.Tensor]):
        import tensorrt as trt

        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self._engine is None:
            raise RuntimeError(f"{plan_path} is not a TensorRT plan for this GPU/TensorRT version")
        self._context = self._engine.create_execution_context()
        self._outputs = {n: torch.empty(tuple(self._engine.get_tensor_shape(n)), dtype=torch.float32,
                                        device="cuda") for n in OUTPUT_NAMES}
        self.pos_enc = pos_enc

    @classmethod
    def for_model(cls, model: Sam2Model, cache_dir: Path | None = None, precision: str = "fp16"):
        why = tensorrt_available()
        if why is not None:
            raise RuntimeError(f"tensorrt backend unavailable: {why}")
        import tensorrt as trt

        cache = ArtefactCache(cache_dir)
        onnx_path = export_cached(model, cache)
        base = onnx_key(model, image_size_of(model))
        key = ArtefactKey("trt", base.weights, base.model_config, base.image_size, precision,
                          f"tensorrt-{trt.__version__}", torch.cuda.get_device_name())
        plan = cache.get_or_build(key, "plan", lambda p: build_engine(onnx_path, p, precision))
        return cls(plan, position_encodings(model, image_size_of(model)))

    def __call__(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        image = image.to("cuda", torch.float32).contiguous()
        self._context.set_tensor_address("image", image.data_ptr())
        for name, out in self._outputs.items():
            self._context.set_tensor_address(name, out.data_ptr())
        if not self._context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return {"backbone_fpn": [self._outputs[n].clone() for n in OUTPUT_NAMES], "vision_pos_enc": list(self.pos_enc)}
