"""SAM 3's detector (facebook/sam3, transformers' Sam3Model): a concept prompt (a short text) and the image in, every
instance of the concept out. Run on a CUDA GPU only: its 840 M parameters at 1008 px take far too long on a CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import DeviceError
from .base import Found, TransformersDetector
from .clip_vocab import clip_tokenizer

TEXT_TOKENS = 32  # the hub tokenizer pads and truncates each concept to 32 tokens


def real_config():
    """SAM 3: transformers' Sam3Config defaults are facebook/sam3's (a ViT at 1008 px, a CLIP text encoder, a
    DETR-style detector with a presence head)."""
    from transformers import Sam3Config

    return Sam3Config()


def offline_processor():
    """The hub processor's settings without the hub: SAM 3's image processor (1008x1008) and CLIP's tokenizer."""
    from transformers import Sam3ImageProcessor, Sam3Processor

    return Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=clip_tokenizer(TEXT_TOKENS))


def check_gpu(name: str, device: torch.device) -> None:
    """DeviceError unless the device is a CUDA GPU."""
    if device.type != "cuda":
        raise DeviceError(f"{name} (SAM 3's detector, 840 M parameters at 1008 px) runs on a CUDA GPU only, not on "
                          f"{device}: pass --device cuda, or use owlv2-base, omdet-turbo or grounding-dino-tiny on a "
                          "CPU")


class Sam3Detector(TransformersDetector):
    """SAM 3's detector behind the seam: the image encoded once, then one detector pass per text."""

    def _find(self, image: np.ndarray, texts: list[str], threshold: float) -> Found:
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        vision = self.model.get_vision_features(pixel_values=pixels)
        boxes, scores, labels = [], [], []
        for i, text in enumerate(texts):
            tokens = self.processor(text=text, return_tensors="pt").to(self.device)
            outputs = self.model(vision_embeds=vision, input_ids=tokens["input_ids"],
                                 attention_mask=tokens["attention_mask"])
            r = self.processor.post_process_object_detection(outputs, threshold=threshold,
                                                             target_sizes=[image.shape[:2]])[0]
            boxes.append(r["boxes"])
            scores.append(r["scores"])
            labels.append(torch.full_like(r["scores"], i, dtype=torch.long))
        return Found(torch.cat(boxes), torch.cat(scores), torch.cat(labels))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def build(name: str, device: torch.device, config=None, snapshot: Path | None = None,
          seed: int = 0) -> Sam3Detector:
    """From a downloaded snapshot, else from `config` (the real one by default) at seeded random weights; on a
    CUDA GPU only (DeviceError elsewhere)."""
    from transformers import Sam3Model, Sam3Processor

    check_gpu(name, device)
    if snapshot is not None:
        return Sam3Detector(name, Sam3Model.from_pretrained(snapshot), Sam3Processor.from_pretrained(snapshot), device)
    torch.manual_seed(seed)
    return Sam3Detector(name, Sam3Model(config or real_config()), offline_processor(), device)
