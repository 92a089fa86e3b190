"""ONNX export of the image encoder (Hiera trunk + FPN neck + SAM decoder's conv_s0/conv_s1)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch

from .base import Sam2Model

# TorchScript exporter at opset 17: every op of the encoder is supported, ONNX Runtime and TensorRT 8.6+
# read it. (torch's torch.export-based exporter at opset 18 gave a faster graph in ONNX Runtime, but
# aborted in a process that had loaded GStreamer first: GStreamer's libunwind, since put behind GCC's
# unwinder by pipelines/gst.py; not measured again. docs/engines.md.)
OPSET = 17
OUTPUT_NAMES = ["fpn0", "fpn1", "fpn2"]


class EncoderGraph(torch.nn.Module):
    """The encoder as exported: image [1, 3, S, S] -> the three backbone_fpn levels."""

    def __init__(self, model: Sam2Model):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.model.forward_image(image)["backbone_fpn"]
        return fpn[0], fpn[1], fpn[2]


@contextlib.contextmanager
def fixed_pos_embed(model: Sam2Model, image_size: int):
    """Hiera interpolates its position embedding (bicubic) on every call; for a fixed input size it
    is a constant, which the exporter would not fold. Swap in the precomputed tensor while exporting."""
    trunk = model.image_encoder.trunk
    patch = trunk.patch_embed.proj.stride[0]
    with torch.no_grad():
        const = trunk._get_pos_embed((image_size // patch, image_size // patch)).detach().clone()
    original = trunk._get_pos_embed
    trunk._get_pos_embed = lambda hw: const
    try:
        yield
    finally:
        trunk._get_pos_embed = original


def export_encoder(model: Sam2Model, image_size: int, path: Path) -> Path:
    """Write the encoder for a fixed input size to an ONNX file (fp32) and check it."""
    import onnx

    graph = EncoderGraph(model).eval()
    dummy = torch.zeros(1, 3, image_size, image_size, device=model.device)
    tmp = path.with_suffix(".tmp.onnx")
    with fixed_pos_embed(model, image_size), torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python conditionals on shapes; the export is for one fixed size.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(graph, (dummy,), str(tmp), opset_version=OPSET, dynamo=False,
                          input_names=["image"], output_names=OUTPUT_NAMES)
    onnx.checker.check_model(str(tmp))
    tmp.replace(path)
    return path
