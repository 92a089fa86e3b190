"""Grounding DINO (IDEA-Research/grounding-dino-tiny): a Swin-T image backbone and a BERT text encoder fused
in a DINO detector whose queries score every token of one prompt ("a cat. a dog.")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import CheckpointError, PromptError
from .base import Found, TransformersDetector

# How sure a query must be of a token for the processor to name it (its default): labels here come from the
# text whose tokens score highest, so it only shapes the processor's own text labels, which are not used.
TEXT_THRESHOLD = 0.25


def real_config():
    """The tiny model: transformers' GroundingDinoConfig defaults are it (Swin-T, bert-base-uncased, 900 queries,
    6 encoder and 6 decoder layers, a 256-token prompt)."""
    from transformers import GroundingDinoConfig

    return GroundingDinoConfig()


def no_tokenizer_error(name: str) -> CheckpointError:
    """What building Grounding DINO without its hub files says: BERT's vocabulary ships with no installed package."""
    return CheckpointError(
        f"{name} needs its tokenizer's vocabulary (BERT's WordPiece vocab.txt), which no installed package ships: "
        f"run `samtrack weights download {name}` once (or use owlv2-base or omdet-turbo, whose CLIP tokenizer "
        "works offline)")


def offline_processor(vocab: Path | dict[str, int]):
    """Grounding DINO's processor from a WordPiece vocabulary (a vocab.txt or token -> id): its image processor
    (shortest side 800, longest 1333) and BERT's uncased tokenizer."""
    from transformers import BertTokenizer, GroundingDinoImageProcessor, GroundingDinoProcessor

    if isinstance(vocab, Path):
        vocab = {t: i for i, t in enumerate(vocab.read_text(encoding="utf-8").splitlines())}
    return GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=BertTokenizer(vocab=vocab))


def prompt_of(texts: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The one prompt Grounding DINO reads ("a cat. a dog."; lower case, as it was trained) and each text's
    character span in it."""
    spans, parts, at = [], [], 0
    for t in texts:
        spans.append((at, at + len(t)))
        parts.append(t.lower())
        at += len(t) + 2  # ". "
    return ". ".join(parts) + ".", spans


class GroundingDinoDetector(TransformersDetector):
    """Grounding DINO behind the detector seam; a detection's label is the text whose tokens score highest."""

    def _find(self, image: np.ndarray, texts: list[str], threshold: float) -> Found:
        prompt, spans = prompt_of(texts)
        limit = self.model.config.max_text_len
        offsets = self.processor.tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) > limit:
            raise PromptError(f"{len(texts)} texts make a prompt of {len(offsets)} tokens: Grounding DINO reads "
                              f"{limit}; give fewer or shorter texts")
        inputs = self.processor(images=image, text=prompt, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        r = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=threshold, text_threshold=TEXT_THRESHOLD,
            target_sizes=[image.shape[:2]])[0]
        probs = outputs.logits[0].sigmoid()
        kept = probs[probs.max(-1).values > threshold]  # the queries the processor kept, in its order
        per_text = torch.stack([kept[:, _tokens_in(offsets, span)].max(-1).values for span in spans], -1)
        return Found(r["boxes"], r["scores"], per_text.argmax(-1))


def _tokens_in(offsets: list[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Indices of the tokens inside a character span (special tokens have an empty span and are never in one)."""
    return [i for i, (a, b) in enumerate(offsets) if b > a and span[0] <= a and b <= span[1]]


def build(name: str, device: torch.device, config=None, snapshot: Path | None = None,
          seed: int = 0, vocab: Path | dict[str, int] | None = None) -> GroundingDinoDetector:
    """From a downloaded snapshot, else from `config` (the real one by default) at seeded random weights with the
    WordPiece `vocab` given (CheckpointError without one: see no_tokenizer_error)."""
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

    if snapshot is not None:
        return GroundingDinoDetector(name, GroundingDinoForObjectDetection.from_pretrained(snapshot),
                                     GroundingDinoProcessor.from_pretrained(snapshot), device)
    if vocab is None:
        raise no_tokenizer_error(name)
    torch.manual_seed(seed)
    return GroundingDinoDetector(name, GroundingDinoForObjectDetection(config or real_config()),
                                 offline_processor(vocab), device)
