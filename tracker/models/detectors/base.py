"""The detector seam: `Detector` (an image and texts in, `Detection`s out), its input limits and checks, and the
part every transformers detector shares (checks, inference mode, boxes clipped to the image, the best first)."""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ...concepts.types import MAX_TEXT, Detection
from ...errors import FrameError, PromptError

# Texts per call: every detector encodes each text (OWLv2: one query each; OmDet-Turbo: one class each; Grounding
# DINO: all in one 256-token prompt; SAM 3: one decoder pass each). More texts cost time on every call and, for
# Grounding DINO, crowd its prompt; 16 concepts per stream is more than a camera's scene asks for.
MAX_TEXTS = 16
# Image sides accepted, pixels: every processor resizes to its own input size (OWLv2 960, OmDet-Turbo 640,
# Grounding DINO 800-1333, SAM 3 1008), so a larger image only costs the resize; 8K is the largest camera frame.
MIN_SIDE, MAX_SIDE = 8, 8192
# Detections returned per call, the best first: random weights or threshold 0 give one per query (OWLv2: 3600,
# Grounding DINO: 900); association looks at a scene's objects, never hundreds.
MAX_DETECTIONS = 100


@runtime_checkable
class Detector(Protocol):
    """An open-vocabulary detector: the objects of an RGB image that match some texts."""

    name: str

    def detect(self, image: np.ndarray, texts: Sequence[str], threshold: float) -> list[Detection]:
        """Detections with score > threshold (at most MAX_DETECTIONS, the best first), boxes in the image's
        pixels, each labelled with the text it was found for."""
        ...


def check_image(image: np.ndarray) -> None:
    """FrameError unless the image is HxWx3 uint8 RGB with sides in [MIN_SIDE, MAX_SIDE]."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise FrameError(f"a detector takes an HxWx3 uint8 RGB image, got {got}")
    h, w = image.shape[:2]
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise FrameError(f"image of {w}x{h} pixels: a detector takes sides of {MIN_SIDE} to {MAX_SIDE} pixels")


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts stripped; PromptError for none, too many, an empty one, a non-string or one too long."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise PromptError(f"texts must be a list of strings, got {type(texts).__name__}")
    if not 1 <= len(texts) <= MAX_TEXTS:
        raise PromptError(f"{len(texts)} texts: a detector takes 1 to {MAX_TEXTS} texts per call")
    out = []
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            raise PromptError(f"every text must be a non-empty string, got {t!r}")
        if len(t.strip()) > MAX_TEXT:
            raise PromptError(f"text {t[:20]!r}... has {len(t.strip())} characters: at most {MAX_TEXT} (a "
                              "short noun phrase)")
        out.append(t.strip())
    return out


def check_threshold(threshold: float) -> float:
    """The threshold as a float; PromptError unless it is a finite number >= 0 (above 1 nothing is found)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold) \
            or threshold < 0:
        raise PromptError(f"threshold must be a finite number >= 0, got {threshold!r}")
    return float(threshold)


@dataclass(frozen=True)
class Found:
    """A model's detections on one image before they become `Detection`s: boxes (N, 4) xyxy in the image's
    pixels, scores (N,) in [0, 1], labels (N,) indices into the texts."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


class TransformersDetector(abc.ABC):
    """What the transformers detectors share: `detect` checks its inputs, runs `_find` in inference mode and turns
    its `Found` into `Detection`s clipped to the image. A family implements `_find`, keeping scores > threshold
    (its processor's post-processing does)."""

    def __init__(self, name: str, model: torch.nn.Module, processor, device: torch.device) -> None:
        self.name = name
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device

    def detect(self, image: np.ndarray, texts: Sequence[str], threshold: float) -> list[Detection]:
        check_image(image)
        labels = check_texts(texts)
        threshold = check_threshold(threshold)
        with torch.inference_mode():
            found = self._find(image, labels, threshold)
            h, w = image.shape[:2]
            boxes = torch.stack([found.boxes[:, 0].clamp(0, w), found.boxes[:, 1].clamp(0, h),
                                 found.boxes[:, 2].clamp(0, w), found.boxes[:, 3].clamp(0, h)], 1).float().cpu()
            scores = found.scores.float().cpu().clamp(0, 1)
            order = torch.argsort(scores, descending=True, stable=True)[:MAX_DETECTIONS]
            idx = found.labels.cpu()
        return [Detection(tuple(float(v) for v in boxes[i].tolist()), float(scores[i]), labels[int(idx[i])])
                for i in order.tolist()]

    @abc.abstractmethod
    def _find(self, image: np.ndarray, texts: list[str], threshold: float) -> Found:
        """The family's boxes (image pixels), scores and indices into `texts` for one image."""
