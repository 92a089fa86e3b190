"""Detector cost: milliseconds per `detect` call of each open-vocabulary detector at its real config and seeded
random weights (random weights cost what trained ones do). `time_detectors` is the seam `samtrack bench concepts`
calls for its "detectors" section."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracker.percentiles import percentiles

TEXTS = ("person", "forklift")  # two concepts per call, as a stream with two concepts asks
THRESHOLD = 0.3  # the detectors' own defaults are 0.1 to 0.3; the cost does not depend on it
WARMUP_CALLS = 1  # calls before timing: the first pays for allocations and lazy initialization
# Grounding DINO's BERT vocabulary is not installed: a stand-in of its 30,522 entries costs the same per call
# (the tokens only index the embedding table); without a download nothing else can run it here.
BERT_VOCAB_SIZE = 30522


@dataclass(frozen=True)
class DetectorTiming:
    """One detector's cost per call on one image."""

    name: str
    device: str
    image_size: int  # the square test image's side, pixels (each processor resizes to its own input)
    calls: int
    p50_ms: float
    p95_ms: float
    params_m: float  # parameters, millions


def stand_in_bert_vocab() -> dict[str, int]:
    """BERT's special tokens, the words of TEXTS and placeholders up to BERT's vocabulary size: for timing only."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *TEXTS]
    return {w: i for i, w in enumerate(words + [f"##{i}" for i in range(BERT_VOCAB_SIZE - len(words))])}


def time_detectors(names: Sequence[str], image_size: int = 512, calls: int = 5, device: str = "cpu",
                   seed: int = 0) -> list[DetectorTiming]:
    """Each detector built at its real config with seeded random weights (never a cached download, so every
    machine times the same), then `calls` timed calls on one random image_size x image_size RGB image."""
    from tracker.models.detectors import load_detector

    image = np.random.default_rng(seed).integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
    out = []
    with tempfile.TemporaryDirectory() as empty_cache:
        for name in names:
            with _quiet():  # the random-weights warning, once per detector, says nothing new here
                det = load_detector(name, device=device, seed=seed, directory=Path(empty_cache),
                                    vocab=stand_in_bert_vocab())
            for _ in range(WARMUP_CALLS):
                det.detect(image, TEXTS, THRESHOLD)
            ms = []
            for _ in range(calls):
                t = time.perf_counter()
                det.detect(image, TEXTS, THRESHOLD)
                ms.append((time.perf_counter() - t) * 1000)
            p = percentiles(ms)
            params = sum(q.numel() for q in det.model.parameters()) / 1e6
            out.append(DetectorTiming(name, device, image_size, calls, p.p50, p.p95, params))
            del det
    return out


class _quiet:
    """Warnings of the detectors' loader off for a block."""

    def __enter__(self):
        self.logger = logging.getLogger("tracker.models.detectors")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
