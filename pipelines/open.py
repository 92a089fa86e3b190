"""Choosing the source implementation for a source string."""

from __future__ import annotations

import logging

from .base import Source
from .gst import HAVE_GST
from .live import DEFAULT_BACKOFF, DEFAULT_STALL_TIMEOUT_S, Backoff, ReconnectingSource
from .spec import SourceSpec, parse_source

log = logging.getLogger(__name__)


def open_source(text: str | SourceSpec, backend: str = "auto", reconnect: bool = True,
                backoff: Backoff = DEFAULT_BACKOFF,
                stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S, start_timeout: float = 10.0,
                fail_fast: bool = True) -> Source:
    """A not-yet-started source for a source string.

    backend: "gstreamer", "opencv", or "auto" (GStreamer when its bindings import, else OpenCV for
    files and cameras). Live sources are wrapped for reconnection unless reconnect=False; fail_fast
    False lets one that cannot start at first be retried instead of raising.
    """
    spec = parse_source(text) if isinstance(text, str) else text
    if backend not in ("auto", "gstreamer", "opencv"):
        raise ValueError(f"backend must be auto, gstreamer or opencv, got {backend!r}")
    use_gst = backend == "gstreamer" or (backend == "auto" and HAVE_GST)
    if spec.kind == "scene":  # synthetic: numpy, no capture library
        from .scene_source import SceneSource

        def factory():
            return SceneSource(spec, start_timeout=start_timeout)
    elif use_gst:
        from .source import GstSource

        def factory():
            return GstSource(spec, start_timeout=start_timeout)
    else:
        if backend == "auto":
            log.warning("GStreamer's Python bindings are missing: falling back to OpenCV capture")
        from .opencv_source import OpenCvSource

        def factory():
            return OpenCvSource(spec, start_timeout=start_timeout)
    if spec.live and reconnect:
        return ReconnectingSource(factory, spec, backoff, stall_timeout_s, fail_fast)
    return factory()
