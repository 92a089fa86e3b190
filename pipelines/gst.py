"""GStreamer bindings, imported once, and GStreamer errors turned into samtrack's typed errors."""

from __future__ import annotations

import ctypes
import logging

from .errors import MissingElementError, NotAVideoError, SourceError, SourceNotFoundError, SourceSpecError

log = logging.getLogger(__name__)


def _gcc_unwinder_first() -> None:
    """GStreamer links libunwind, and GObject introspection loads GStreamer's libraries into the global symbol
    scope: libunwind's _Unwind_* then come before GCC's for every C++ library bound later, and an exception thrown
    and caught inside OpenVINO (its converter, its CPU plugin) is unwound by the wrong unwinder: the process
    aborts. GCC's unwinder, made global before GStreamer, keeps its symbols first."""
    try:
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:  # no GCC runtime by that name (not glibc Linux): nothing to put first
        pass


try:
    _gcc_unwinder_first()
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst

    Gst.init(None)
    HAVE_GST = True
except (ImportError, ValueError) as _e:  # no PyGObject, or no GStreamer typelib
    GLib = Gst = None  # type: ignore[assignment]
    HAVE_GST = False
    GST_IMPORT_ERROR = str(_e)


def require_gst() -> None:
    if not HAVE_GST:
        raise MissingElementError(
            f"GStreamer's Python bindings are not available ({GST_IMPORT_ERROR}); run ./setup.sh, or use a "
            f"file or camera source through the OpenCV fallback"
        )


def element_available(name: str) -> bool:
    return HAVE_GST and Gst.ElementFactory.find(name) is not None


def parse_launch(description: str):
    """Gst.parse_launch with its errors typed (unknown element -> MissingElementError)."""
    require_gst()
    try:
        return Gst.parse_launch(description)
    except GLib.Error as e:
        if e.matches(Gst.parse_error_quark(), Gst.ParseError.NO_SUCH_ELEMENT):
            raise MissingElementError(f"GStreamer: {e.message} (is its plugin installed?) in: {description}") from e
        raise SourceSpecError(f"GStreamer cannot parse the pipeline: {e.message} in: {description}") from e


def error_from_message(msg, what: str) -> SourceError:
    """The typed error for a GStreamer ERROR message, quoting GStreamer's message and element."""
    err, debug = msg.parse_error()
    origin = msg.src.get_name() if msg.src is not None else "pipeline"
    detail = (debug or "").strip().splitlines()[-1] if debug else ""
    text = f"GStreamer says: {err.message} (element {origin}{'; ' + detail if detail else ''})"
    res, stream, core = Gst.resource_error_quark(), Gst.stream_error_quark(), Gst.core_error_quark()
    if err.matches(res, err.code):
        if err.code in (int(Gst.ResourceError.NOT_FOUND), int(Gst.ResourceError.OPEN_READ),
                        int(Gst.ResourceError.OPEN_READ_WRITE), int(Gst.ResourceError.NOT_AUTHORIZED)):
            return SourceNotFoundError(f"{what} not found or cannot be opened. {text}")
        return SourceError(f"{what}: {text}")
    if err.matches(stream, err.code):
        if err.code in (int(Gst.StreamError.TYPE_NOT_FOUND), int(Gst.StreamError.WRONG_TYPE),
                        int(Gst.StreamError.CODEC_NOT_FOUND), int(Gst.StreamError.DECODE),
                        int(Gst.StreamError.DEMUX), int(Gst.StreamError.FORMAT)) or "not-linked" in (debug or ""):
            return NotAVideoError(f"{what} is not a video GStreamer can decode. {text}")
        return SourceError(f"{what}: {text}")
    if err.matches(core, err.code) and err.code == int(Gst.CoreError.MISSING_PLUGIN):
        return MissingElementError(f"{what}: a GStreamer plugin is missing. {text}")
    return SourceError(f"{what}: {text}")
