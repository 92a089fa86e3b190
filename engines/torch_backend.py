"""The PyTorch encoder: Meta's module as is (fp32, bit-exact), or under bf16 autocast."""

from __future__ import annotations

import torch

from .base import Sam2Model


class TorchEncoder:
    """sam2's `forward_image`, optionally under bf16 autocast."""

    name = "torch"

    def __init__(self, model: Sam2Model, precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"torch precision must be fp32 or bf16, got {precision!r}")
        self.model, self.precision = model, precision

    def __call__(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        if self.precision == "bf16":
            with torch.autocast(device_type=image.device.type, dtype=torch.bfloat16):
                out = self.model.forward_image(image)
            return {"backbone_fpn": [x.float() for x in out["backbone_fpn"]],
                    "vision_pos_enc": [x.float() for x in out["vision_pos_enc"]]}
        return self.model.forward_image(image)
