"""The image encoder and the memory attention exported to ONNX and run by ONNX Runtime, on the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .base import Sam2Model, image_size_of, position_encodings
from .cache import ArtefactCache, ArtefactKey, weights_digest
from .export import OPSET, OUTPUT_NAMES, export_encoder
from .memory_graph import INPUT_NAMES as MEMORY_INPUTS
from .memory_graph import export_memory_attention

log = logging.getLogger(__name__)


def onnx_key(model: Sam2Model, image_size: int, kind: str = "onnx") -> ArtefactKey:
    """Cache key of an exported graph: "onnx" (image encoder) or "onnx-memory" (memory attention), over
    the weights of exactly the modules that graph holds."""
    import onnx

    if kind == "onnx-memory":
        ma = model.memory_attention
        config = f"memory-attention:{ma.num_layers}:{ma.d_model}:{model.mem_dim}:{type(model).__name__}"
        modules = {"memory_attention": ma}
    else:
        trunk = model.image_encoder.trunk
        config = f"hiera:{trunk.patch_embed.proj.out_channels}:{len(trunk.blocks)}:{type(model).__name__}"
        modules = {"image_encoder": model.image_encoder, "conv_s0": model.sam_mask_decoder.conv_s0,
                   "conv_s1": model.sam_mask_decoder.conv_s1}
    return ArtefactKey(kind, weights_digest(modules), config, image_size, "fp32",
                       f"onnx-{onnx.__version__}/opset-{OPSET}/torchscript/torch-{torch.__version__}", "any")


# What each cached ONNX kind holds, and its exporter.
EXPORTERS = {"onnx": ("image encoder", export_encoder), "onnx-memory": ("memory attention", export_memory_attention)}


def export_cached(model: Sam2Model, cache: ArtefactCache, kind: str = "onnx") -> Path:
    """An ONNX file (`kind`: "onnx" the image encoder, "onnx-memory" the memory attention) from the
    cache, exported on a miss."""
    size = image_size_of(model)
    what, export = EXPORTERS[kind]

    def build(path: Path) -> Path:
        log.info("exporting the %s to ONNX at %d px (once per weights and size)", what, size)
        export(model, size, path)
        return path

    return cache.get_or_build(onnx_key(model, size, kind), "onnx", build)


def _session(path: Path, threads: int | None, device: torch.device):
    """An ONNX Runtime session on the CPU provider, the only one samtrack runs (on a GPU, torch and TensorRT
    serve: docs/engines.md); named, so an installed onnxruntime-gpu never picks CUDA behind the tracker's back."""
    import onnxruntime as ort

    if device.type != "cpu":
        raise ValueError(f"the onnxruntime backend runs on the CPU, not on {device}: use backend torch or "
                         f"tensorrt on a GPU")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    log.info("onnxruntime %s: %s on %s", ort.__version__, path.name, ", ".join(session.get_providers()))
    return session


class OrtEncoder:
    """Runs the exported encoder; position encodings come from the torch model once."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, pos_enc: list[torch.Tensor], device: torch.device,
                 threads: int | None = None):
        self.session = _session(onnx_path, threads, device)
        self.pos_enc, self.device = pos_enc, device

    @classmethod
    def for_model(cls, model: Sam2Model, cache_dir: Path | None = None, threads: int | None = None):
        path = export_cached(model, ArtefactCache(cache_dir))
        return cls(path, position_encodings(model, image_size_of(model)), model.device,
                   threads or torch.get_num_threads())

    def __call__(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        outs = self.session.run(OUTPUT_NAMES, {"image": image.detach().cpu().numpy().astype(np.float32)})
        fpn = [torch.from_numpy(o).to(self.device) for o in outs]
        return {"backbone_fpn": fpn, "vision_pos_enc": list(self.pos_enc)}


class OrtMemoryAttention:
    """Meta's memory_attention call, run by ONNX Runtime for one object with object pointers; other
    calls (a batch of objects, or a memory without pointers) go to the torch module."""

    def __init__(self, onnx_path: Path, module: torch.nn.Module, device: torch.device,
                 threads: int | None = None):
        self.session = _session(onnx_path, threads, device)
        self.module, self.device = module, device

    @classmethod
    def for_model(cls, model: Sam2Model, cache_dir: Path | None = None, threads: int | None = None):
        path = export_cached(model, ArtefactCache(cache_dir), kind="onnx-memory")
        return cls(path, model.memory_attention, model.device, threads or torch.get_num_threads())

    def __call__(self, curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        if curr[0].shape[1] != 1 or num_obj_ptr_tokens == 0:
            return self.module(curr=curr, curr_pos=curr_pos, memory=memory, memory_pos=memory_pos,
                               num_obj_ptr_tokens=num_obj_ptr_tokens)
        n = memory.shape[0] - num_obj_ptr_tokens
        inputs = (curr[0], curr_pos[0], memory[:n], memory_pos[:n], memory[n:], memory_pos[n:])
        feed = {k: v.detach().cpu().float().contiguous().numpy() for k, v in zip(MEMORY_INPUTS, inputs)}
        return torch.from_numpy(self.session.run(None, feed)[0]).to(self.device)
