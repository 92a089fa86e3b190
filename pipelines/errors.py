"""Typed errors of frame sources and sinks; messages quote GStreamer's own words."""

from __future__ import annotations


class SourceError(Exception):
    """A source that cannot start or that failed while running."""

    code = "source_error"


class SourceSpecError(SourceError, ValueError):
    """A source string samtrack cannot parse (unknown scheme, bad option)."""

    code = "bad_source"


class MissingElementError(SourceError):
    """A GStreamer element (plugin) that is not installed, or unknown in a gst: description."""

    code = "missing_element"


class SourceNotFoundError(SourceError):
    """A file, camera device or stream that does not exist or cannot be opened."""

    code = "source_not_found"


class NotAVideoError(SourceError):
    """Input that GStreamer cannot decode as video (not a media file, audio only, unknown codec)."""

    code = "not_a_video"


class SourceTimeoutError(SourceError):
    """A source that gave no frame and no error within the allowed time."""

    code = "source_timeout"


class EndOfStream(Exception):
    """The source has no more frames (end of a file, or a live source that ended for good)."""


class SinkError(Exception):
    """An output (file, display, RTSP server) that cannot be created or fails."""
