"""The image encoder exported to ONNX and run by ONNX Runtime (CPU here; CUDA provider where present)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .base import Sam2Model, image_size_of, position_encodings
from .cache import ArtefactCache, ArtefactKey, weights_digest
from .export import OPSET, OUTPUT_NAMES, export_encoder

log = logging.getLogger(__name__)


def onnx_key(model: Sam2Model, image_size: int) -> ArtefactKey:
    import onnx

    trunk = model.image_encoder.trunk
    config = f"hiera:{trunk.patch_embed.proj.out_channels}:{len(trunk.blocks)}:{type(model).__name__}"
    return ArtefactKey("onnx", weights_digest(model), config, image_size, "fp32",
                       f"onnx-{onnx.__version__}/opset-{OPSET}/torchscript/torch-{torch.__version__}", "any")


def export_cached(model: Sam2Model, cache: ArtefactCache, progress=None) -> Path:
    """The encoder's ONNX file from the cache, exporting it on a miss."""
    size = image_size_of(model)

    def build(path: Path) -> Path:
        log.info("exporting the image encoder to ONNX at %d px (once per weights and size)", size)
        if progress:
            progress("exporting ONNX")
        return export_encoder(model, size, path)

    return cache.get_or_build(onnx_key(model, size), "onnx", build)


class OrtEncoder:
    """Runs the exported encoder; position encodings come from the torch model once."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, pos_enc: list[torch.Tensor], device: torch.device,
                 threads: int | None = None, providers: list[str] | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        available = ort.get_available_providers()
        if providers is None:
            providers = ["CUDAExecutionProvider"] if device.type == "cuda" and \
                "CUDAExecutionProvider" in available else []
            providers.append("CPUExecutionProvider")
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        self.providers = self.session.get_providers()
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
