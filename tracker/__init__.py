"""Streaming SAM2 tracker: frames and prompts in, per-object masks out."""

from .errors import (
    CheckpointError,
    FrameError,
    FrameWindowError,
    ModelNameError,
    PromptError,
    SamtrackError,
    UnknownObjectError,
)
from .options import TrackerOptions
from .results import FrameResult, ObjectResult
from .tracker import Tracker

__all__ = [
    "CheckpointError", "FrameError", "FrameResult", "FrameWindowError", "ModelNameError",
    "ObjectResult", "PromptError", "SamtrackError", "Tracker", "TrackerOptions", "UnknownObjectError",
]
