"""Frame sources and sinks: GStreamer (or OpenCV as a fallback) in, numpy frames out; overlays out.

Names are imported on first use: importing `pipelines.errors` or `pipelines.synthetic` does not load
GStreamer. (Processes that also export with torch's TorchScript tracer must import torch first:
tracing after GStreamer's libraries are loaded crashes, see docs/engines.md.)"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "open_source": ".open",
    "parse_source": ".spec",
    "SourceSpec": ".spec",
    "Frame": ".frame",
    "Source": ".base",
    "StreamInfo": ".base",
    **{name: ".errors" for name in ("EndOfStream", "MissingElementError", "NotAVideoError", "SinkError",
                                    "SourceError", "SourceNotFoundError", "SourceSpecError", "SourceTimeoutError")},
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
