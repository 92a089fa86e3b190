"""What a source argument names: a recording's directory (`serve --record`) or a source string."""

from __future__ import annotations

from pathlib import Path

from pipelines.base import Source
from pipelines.errors import SourceSpecError
from pipelines.spec import parse_source

from ..paths import PathArg, PathError

SOURCES = "test:, a video file, a recording's directory, v4l2:/dev/videoN, rtsp://... or gst:..."


def is_recording(text: str) -> bool:
    """A directory is read as a recording (a missing manifest is then reported by its reader)."""
    return Path(text).expanduser().is_dir()


def check_source(text: str, recordings: bool = True) -> None:
    """A source argument before anything is opened: a path must be an existing file, or (where `recordings`) a
    directory holding a recording; other source strings are checked where they are opened."""
    if not text.strip():
        raise PathError("empty source", f"give {SOURCES}")
    if is_recording(text):
        if not recordings:
            raise PathError(f"'{text}' is a directory, not a video file", "give a video file or a source string")
        from .format import MANIFEST  # torch, only here

        if not (Path(text).expanduser() / MANIFEST).is_file():
            raise PathError(f"'{text}' is a directory but not a recording (no {MANIFEST})",
                            "give a video file, or a directory written by `samtrack serve --record`")
        return
    try:
        spec = parse_source(text)
    except SourceSpecError:
        return  # said where the source is opened, as before
    if spec.kind == "file" and not Path(spec.location).exists():
        raise PathError(f"file not found: '{text}'", f"check the path, or give {SOURCES}")


def source_arg(recordings: bool = True, named: bool = False) -> PathArg:
    """The argparse type of a source argument; `named`: NAME=SOURCE is taken too (serve's several streams)."""

    def check(text: str) -> None:
        from ..protocol.base import is_stream_name

        name, sep, rest = text.partition("=")
        check_source(rest if named and sep and rest and is_stream_name(name) else text, recordings)

    return PathArg("source", check)


def open_input(text: str, realtime: bool = False, **source_options) -> Source:
    """A not-yet-started source for a source argument. A recording yields its frames only (its commands are
    `samtrack replay`'s business); realtime paces them as they were captured, as a camera would."""
    from pipelines import open_source

    from .replay import RecordingSource

    if is_recording(text):
        return RecordingSource(Path(text).expanduser(), realtime=realtime)
    return open_source(text, **source_options)
