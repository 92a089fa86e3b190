"""Open-vocabulary detectors behind one seam (base.py: `Detector`, an RGB image and texts in, `Detection`s out):
OWLv2, OmDet-Turbo, Grounding DINO and SAM 3's detector from transformers, one module each; their names and hub
repositories (registry.py), hub downloads (hub.py), loading by name (build.py) and CLIP's tokenizer from
open_clip's vocabulary (clip_vocab.py). Names are imported on first use: the registry loads without torch."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Detector": ".base", "MAX_TEXTS": ".base", "MAX_DETECTIONS": ".base",
    "load_detector": ".build",
    "DETECTORS": ".registry", "DetectorSpec": ".registry", "detector_spec": ".registry", "is_detector": ".registry",
    "cached_snapshot": ".hub", "download_detector": ".hub", "detector_random_weights_warning": ".hub",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'tracker.models.detectors' has no attribute {name!r}")
