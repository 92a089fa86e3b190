"""The video files samtrack writes, by extension, and the GStreamer encoders tried for each (best first). Plain
data: a command checks an output's name here before GStreamer, or a model, is loaded."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SinkError

FILE_CHAINS = {
    ".mp4": [("x264enc", "x264enc tune=zerolatency speed-preset=ultrafast ! h264parse ! mp4mux"),
             ("openh264enc", "openh264enc ! h264parse ! mp4mux"),
             ("avenc_mpeg4", "avenc_mpeg4 ! mpeg4videoparse ! mp4mux")],
    ".mkv": [("x264enc", "x264enc tune=zerolatency speed-preset=ultrafast ! h264parse ! matroskamux"),
             ("vp8enc", "vp8enc deadline=1 ! matroskamux")],
    ".webm": [("vp8enc", "vp8enc deadline=1 ! webmmux")],
    ".avi": [("jpegenc", "jpegenc ! avimux")],
}


def video_extension(path: str | os.PathLike) -> str:
    """The file's extension, lower case, when samtrack writes videos of that kind; SinkError otherwise."""
    ext = Path(path).suffix.lower()
    if ext not in FILE_CHAINS:
        raise SinkError(f"unsupported output extension {ext or '(none)'!r} of {str(path)!r}: name the video "
                        f"{', '.join(FILE_CHAINS)}")
    return ext
