"""OmDet-Turbo (omlab/omdet-turbo-swin-tiny-hf): a Swin-T backbone, an RT-DETR-style encoder and decoder whose
queries are conditioned on CLIP text embeddings of the classes and of a task prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import Found, TransformersDetector
from .clip_vocab import clip_tokenizer

TEXT_TOKENS = 77  # the hub tokenizer pads every class and the task prompt to CLIP's full context
# Box overlap above which the processor's non-maximum suppression keeps only the best box of a class (its
# default): lower merges neighbours of one class, higher returns duplicates of one object.
NMS_IOU = 0.5


def real_config():
    """The swin-tiny model: transformers' OmDetTurboConfig defaults are it (timm's Swin-T at 640 px, a CLIP text
    tower, 900 queries, a 6-layer decoder)."""
    from transformers import OmDetTurboConfig

    return OmDetTurboConfig()


def offline_processor(config):
    """The hub processor's settings without the hub: DETR's image processor at the config's input side (640),
    ImageNet's mean and deviation, CLIP's tokenizer."""
    from transformers import DetrImageProcessor, OmDetTurboProcessor

    side = config.image_size
    image = DetrImageProcessor(size={"height": side, "width": side}, do_pad=False)
    return OmDetTurboProcessor(image_processor=image, tokenizer=clip_tokenizer(TEXT_TOKENS))


class OmDetTurboDetector(TransformersDetector):
    """OmDet-Turbo behind the detector seam."""

    def _find(self, image: np.ndarray, texts: list[str], threshold: float) -> Found:
        inputs = self.processor(images=image, text=texts, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        r = self.processor.post_process_grounded_object_detection(
            outputs, threshold=threshold, nms_threshold=NMS_IOU, target_sizes=[image.shape[:2]])[0]
        return Found(r["boxes"], r["scores"], r["labels"])


def build(name: str, device: torch.device, config=None, snapshot: Path | None = None,
          seed: int = 0) -> OmDetTurboDetector:
    """From a downloaded snapshot, else from `config` (the real one by default) at seeded random weights."""
    from transformers import OmDetTurboForObjectDetection, OmDetTurboProcessor

    if snapshot is not None:
        return OmDetTurboDetector(name, OmDetTurboForObjectDetection.from_pretrained(snapshot),
                                  OmDetTurboProcessor.from_pretrained(snapshot), device)
    torch.manual_seed(seed)
    config = config or real_config()
    return OmDetTurboDetector(name, OmDetTurboForObjectDetection(config), offline_processor(config), device)
