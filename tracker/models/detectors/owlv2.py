"""OWLv2 (google/owlv2-base-patch16-ensemble): a CLIP ViT-B/16 whose patch tokens each predict a box, scored
against every text's CLIP embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import Found, TransformersDetector
from .clip_vocab import clip_tokenizer

# The hub tokenizer's settings: 16 tokens per text query, "!" as padding (the pooled token is the end token).
TEXT_TOKENS, PAD_TOKEN = 16, "!"
INPUT_SIDE = 960  # OWLv2's input: 60x60 patches of 16 px (OWL-ViT's, transformers' default, was 768)


def real_config():
    """The base-patch16 architecture: transformers' Owlv2Config defaults (ViT-B/16, a 12-layer 512-wide text
    tower, 512-d projections) at OWLv2's 960 px."""
    from transformers import Owlv2Config

    return Owlv2Config(vision_config={"image_size": INPUT_SIDE})


def offline_processor(config):
    """The hub processor's settings without the hub: the image padded to a square and resized to the config's
    input side (960), CLIP's tokenizer."""
    from transformers import Owlv2ImageProcessor, Owlv2Processor

    side = config.vision_config.image_size
    return Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": side, "width": side}),
                          tokenizer=clip_tokenizer(TEXT_TOKENS, pad_token=PAD_TOKEN))


class Owlv2Detector(TransformersDetector):
    """OWLv2 behind the detector seam."""

    def _find(self, image: np.ndarray, texts: list[str], threshold: float) -> Found:
        inputs = self.processor(text=[texts], images=image, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        side = max(image.shape[:2])  # the processor pads to a square at the bottom and right: boxes are in it
        r = self.processor.post_process_grounded_object_detection(outputs, threshold=threshold,
                                                                  target_sizes=[(side, side)])[0]
        return Found(r["boxes"], r["scores"], r["labels"])


def build(name: str, device: torch.device, config=None, snapshot: Path | None = None,
          seed: int = 0) -> Owlv2Detector:
    """From a downloaded snapshot, else from `config` (the real one by default) at seeded random weights."""
    from transformers import Owlv2ForObjectDetection, Owlv2Processor

    if snapshot is not None:
        return Owlv2Detector(name, Owlv2ForObjectDetection.from_pretrained(snapshot),
                             Owlv2Processor.from_pretrained(snapshot), device)
    torch.manual_seed(seed)
    config = config or real_config()
    return Owlv2Detector(name, Owlv2ForObjectDetection(config), offline_processor(config), device)
