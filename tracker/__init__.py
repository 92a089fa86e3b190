"""Streaming SAM2 tracker: frames and prompts in, per-object masks out.

Rooms: core/ (the tracker), models/, protocol/ (the wire), daemon/, client/, viewer/, cli/; see docs/design.md.

Names are imported on first use, so `samtrack` subcommands that need no model start without torch.
"""

from __future__ import annotations

import importlib
import importlib.metadata

__version__ = importlib.metadata.version("samtrack")

_EXPORTS = {
    "Tracker": ".core.tracker",
    "TrackerOptions": ".core.options",
    "FrameResult": ".core.results",
    "ObjectResult": ".core.results",
    "CheckpointError": ".errors",
    "FrameError": ".errors",
    "FrameWindowError": ".errors",
    "ModelNameError": ".errors",
    "PromptError": ".errors",
    "SamtrackError": ".errors",
    "UnknownObjectError": ".errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'tracker' has no attribute {name!r}")
