"""Frame sources and sinks: GStreamer (or OpenCV as a fallback) in, numpy frames out; overlays out."""

from .errors import (
    EndOfStream,
    MissingElementError,
    NotAVideoError,
    SinkError,
    SourceError,
    SourceNotFoundError,
    SourceSpecError,
    SourceTimeoutError,
)
from .frame import Frame
from .open import open_source
from .spec import SourceSpec, parse_source

__all__ = [
    "EndOfStream", "Frame", "MissingElementError", "NotAVideoError", "SinkError", "SourceError",
    "SourceNotFoundError", "SourceSpec", "SourceSpecError", "SourceTimeoutError", "open_source", "parse_source",
]
