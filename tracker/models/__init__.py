"""Meta's SAM2 / SAM2.1 models: the registry of released models (registry.py), building them from a
checkpoint or seeded random weights (build.py), and the local checkpoint cache with downloads
(weights.py). Names are imported on first use: the registry and the cache load without torch."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_sam2_model": ".build", "load_checkpoint": ".build", "seeded_model": ".build",
    "MODELS": ".registry", "ModelSpec": ".registry", "model_spec": ".registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'tracker.models' has no attribute {name!r}")
