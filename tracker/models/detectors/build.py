"""A detector by name: its downloaded weights where cached, else seeded random weights and a loud warning."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import torch

from ...devices import check_device
from .base import Detector
from .hub import cached_snapshot, detector_random_weights_warning
from .registry import detector_spec

log = logging.getLogger(__name__)


def load_detector(name: str, device: str | torch.device = "cpu", seed: int = 0, directory: Path | None = None,
                  config=None, vocab: Path | dict[str, int] | None = None) -> Detector:
    """The detector `name` on `device`: from its downloaded snapshot in the cache (`directory`, by default
    samtrack's), else from `config` (the real architecture by default) at seeded random weights, with a warning.

    `vocab` is a WordPiece vocabulary for Grounding DINO at random weights (its tokenizer is not installed here).
    ModelNameError for an unknown name, DeviceError for SAM 3 off a GPU, CheckpointError for Grounding DINO with
    neither a download nor a vocabulary, ImportError naming the extra to install without transformers."""
    spec = detector_spec(name)
    dev = check_device(device)
    try:
        family = importlib.import_module(f".{spec.family}", __package__)
        importlib.import_module("transformers")
    except ImportError as e:
        raise ImportError(f"{name} needs transformers and open_clip_torch: pip install -e '.[concepts]' ({e})") from e
    snapshot = cached_snapshot(name, directory)
    options = {"vocab": vocab} if spec.family == "grounding_dino" else {}
    detector = family.build(name, config=config, snapshot=snapshot, device=dev, seed=seed, **options)
    if snapshot is None:
        log.warning("%s", detector_random_weights_warning(name, directory))
    return detector
