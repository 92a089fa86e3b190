"""What a source argument names: a recording's directory (`serve --record`) or a source string."""

from __future__ import annotations

from pathlib import Path

from pipelines import open_source
from pipelines.base import Source

from .replay import RecordingSource


def is_recording(text: str) -> bool:
    """A directory is read as a recording (a missing manifest is then reported by its reader)."""
    return Path(text).expanduser().is_dir()


def open_input(text: str, realtime: bool = False, **source_options) -> Source:
    """A not-yet-started source for a source argument. A recording yields its frames only (its commands are
    `samtrack replay`'s business); realtime paces them as they were captured, as a camera would."""
    if is_recording(text):
        return RecordingSource(Path(text).expanduser(), realtime=realtime)
    return open_source(text, **source_options)
