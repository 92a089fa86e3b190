"""TensorRT engine of the same ONNX encoder: built once per GPU model/precision (cached), run on the model's
CUDA device on a stream of its own. Thin on purpose: the graph is the one verified through ONNX Runtime."""

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
# TensorRT's tensor types (by DataType name) as torch dtypes: buffers are allocated as the plan declares them.
TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
                "UINT8": torch.uint8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool}


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
    if precision == "fp32":  # IEEE fp32, like torch's fp32 path (docs/engines.md): TensorRT allows TF32 by default
        config.clear_flag(trt.BuilderFlag.TF32)
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


def tensor_spec(engine: Any, name: str) -> tuple[tuple[int, ...], torch.dtype]:
    """Shape and torch dtype of one of the plan's input or output tensors, as the plan declares them."""
    shape = tuple(int(d) for d in engine.get_tensor_shape(name))
    kind = engine.get_tensor_dtype(name).name
    if any(d < 0 for d in shape) or kind not in TORCH_DTYPES:
        raise RuntimeError(f"TensorRT plan tensor {name!r} has shape {shape} and type {kind}: samtrack runs plans "
                           f"with fixed shapes and types {', '.join(TORCH_DTYPES)} (rebuild it with samtrack export)")
    return shape, TORCH_DTYPES[kind]


def plan_key(model: Sam2Model, precision: str = "fp16") -> ArtefactKey:
    """The cache key of the model's plan on its GPU (TensorRT must import)."""
    import tensorrt as trt

    base = onnx_key(model, image_size_of(model))
    return ArtefactKey("trt", base.weights, base.model_config, base.image_size, precision,
                       f"tensorrt-{trt.__version__}", torch.cuda.get_device_name(model.device))


def plan_cached(model: Sam2Model, cache_dir: Path | None = None, precision: str = "fp16") -> bool:
    """Whether TensorRT runs here and a plan of this model for its GPU is in the cache (`samtrack export`)."""
    if tensorrt_available() is not None or model.device.type != "cuda":
        return False
    return ArtefactCache(cache_dir).path_for(plan_key(model, precision), "plan").is_file()


class TensorRTEncoder:
    """Runs a TensorRT plan of the encoder on one CUDA device, on a stream of its own that is ordered after
    and before torch's current stream on that device; features are returned in float32."""

    name = "tensorrt"

    def __init__(self, plan_path: Path, pos_enc: list[torch.Tensor], device: torch.device):
        import tensorrt as trt

        if device.type != "cuda":
            raise ValueError(f"the tensorrt backend runs on a CUDA device, not on {device}")
        self.device = device
        with torch.cuda.device(device):  # TensorRT binds the engine and its context to the current device
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
            if self._engine is None:
                raise RuntimeError(f"{plan_path} is not a TensorRT plan for this GPU/TensorRT version")
            self._context = self._engine.create_execution_context()
            # Not the legacy default stream: enqueueing there makes TensorRT synchronise around each call.
            self._stream = torch.cuda.Stream(device)
        self._image_shape, self._image_dtype = tensor_spec(self._engine, "image")
        self._outputs = {}
        for n in OUTPUT_NAMES:
            shape, dtype = tensor_spec(self._engine, n)
            self._outputs[n] = torch.empty(shape, dtype=dtype, device=device)
        self.pos_enc = pos_enc

    @classmethod
    def for_model(cls, model: Sam2Model, cache_dir: Path | None = None, precision: str = "fp16"):
        why = tensorrt_available()
        if why is not None:
            raise RuntimeError(f"tensorrt backend unavailable: {why}")

        device = model.device
        if device.type != "cuda":
            raise ValueError(f"the tensorrt backend needs the model on a CUDA device, not on {device}")
        cache = ArtefactCache(cache_dir)
        onnx_path = export_cached(model, cache)
        key = plan_key(model, precision)

        def build(path: Path) -> Path:
            with torch.cuda.device(device):  # the plan is built for (and tuned on) the chosen GPU
                return build_engine(onnx_path, path, precision)

        plan = cache.get_or_build(key, "plan", build)
        return cls(plan, position_encodings(model, image_size_of(model)), device)

    def __call__(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        if tuple(image.shape) != self._image_shape:
            raise ValueError(f"the TensorRT plan takes one image of shape {self._image_shape}, got "
                             f"{tuple(image.shape)}: batches of frames (batch_streams) need backend torch")
        with torch.cuda.device(self.device):
            current = torch.cuda.current_stream(self.device)
            image = image.to(self.device, self._image_dtype).contiguous()
            # The engine waits for the image (and for the copies of the last call's outputs), and torch's
            # stream waits for the engine; memory freed on torch's stream is reused only after that wait.
            self._stream.wait_stream(current)
            self._context.set_tensor_address("image", image.data_ptr())
            for name, out in self._outputs.items():
                self._context.set_tensor_address(name, out.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            current.wait_stream(self._stream)
            fpn = [self._outputs[n].to(torch.float32, copy=True) for n in OUTPUT_NAMES]
        return {"backbone_fpn": fpn, "vision_pos_enc": list(self.pos_enc)}
