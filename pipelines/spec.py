"""Source strings a user types, parsed into typed specs, and the GStreamer launch descriptions for them.

    test:[?pattern=ball&width=640&height=480&fps=30]   videotestsrc (live)
    /path/video.mp4 | file:/path | file:///path[#realtime=1]   any file GStreamer decodes
    v4l2:/dev/video0[?width=640&height=480&fps=30&format=mjpeg|raw]   a camera (live)
    rtsp://host:port/path[#latency=200&transport=tcp|udp]   an RTSP stream (live)
    gst:<launch description>   your own pipeline; samtrack appends its conversion and sink
    scene:NAME[?width=640&height=480&fps=15&seed=0]   a synthetic scene with known masks (live, no GStreamer)

Every function here is pure: strings in, strings out.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field

from .errors import SourceSpecError
from .scenes import SCENES

SINK_NAME = "samtrack_sink"
TEST_SIZE = (640, 480)  # the test source's frames unless its string says otherwise (a camera's common size)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source string."""

    kind: str  # "test" | "file" | "v4l2" | "rtsp" | "gst" | "scene"
    location: str  # pattern, path, device, URL or launch description
    options: dict[str, str] = field(default_factory=dict)

    @property
    def nominal_size(self) -> tuple[int, int] | None:
        """(width, height) its frames will have, where the string fixes it (the test source); else None."""
        if self.kind != "test":
            return None
        return int(self.options.get("width", TEST_SIZE[0])), int(self.options.get("height", TEST_SIZE[1]))

    @property
    def live(self) -> bool:
        """Live sources deliver the latest frame and drop stale ones; files deliver every frame."""
        live = ("test", "v4l2", "rtsp", "scene")
        return self.kind in live or (self.kind == "gst" and self.options.get("live") == "1")


_OPTIONS = {
    "test": {"pattern", "width", "height", "fps"},
    "v4l2": {"width", "height", "fps", "format"},
    "rtsp": {"latency", "transport"},
    "file": {"realtime"},
    "gst": {"live"},
    "scene": {"width", "height", "fps", "seed"},
}
_PATTERNS = {"smpte", "snow", "black", "white", "red", "green", "blue", "checkers-1", "checkers-8",
             "circular", "blink", "smpte75", "zone-plate", "gamut", "chroma-zone-plate", "solid-color",
             "ball", "smpte100", "bar", "pinwheel", "spokes", "gradient", "colors"}


def parse_source(text: str) -> SourceSpec:
    """Parse a source string (see the module docstring); raise SourceSpecError saying what is allowed."""
    if not isinstance(text, str) or not text.strip():
        raise SourceSpecError("empty source: use test:, a file path, v4l2:/dev/videoN, rtsp://... or gst:...")
    text = text.strip()
    if text.startswith("gst:"):
        desc = text[4:].strip()
        if not desc:
            raise SourceSpecError("gst: needs a launch description, e.g. gst:videotestsrc pattern=ball")
        return SourceSpec("gst", desc)
    if text.startswith("test:"):
        return _with_options("test", "", text[5:].lstrip("?"))
    if text.startswith("scene:"):
        name, _, query = text[6:].partition("?")
        if name not in SCENES:
            raise SourceSpecError(f"unknown scene {name!r}; one of {', '.join(SCENES)}")
        return _with_options("scene", name, query)
    if text.startswith("v4l2:"):
        dev, _, query = text[5:].partition("?")
        return _with_options("v4l2", dev or "/dev/video0", query)
    if text.startswith(("rtsp://", "rtsps://", "rtspt://")):
        url, _, frag = text.partition("#")
        return _with_options("rtsp", url, frag)
    if "://" in text and not text.startswith("file://"):
        raise SourceSpecError(f"unsupported source scheme in {text!r}: use test:, a file path, v4l2:, rtsp:// or gst:")
    path, _, frag = text.partition("#")
    if path.startswith("file://"):
        path = urllib.parse.unquote(urllib.parse.urlparse(path).path)
    elif path.startswith("file:"):
        path = path[5:]
    return _with_options("file", os.path.abspath(os.path.expanduser(path)), frag)


def _with_options(kind: str, location: str, query: str) -> SourceSpec:
    opts = dict(urllib.parse.parse_qsl(query, keep_blank_values=True)) if query else {}
    unknown = set(opts) - _OPTIONS[kind]
    if unknown:
        raise SourceSpecError(f"unknown option(s) {sorted(unknown)} for {kind}: allowed {sorted(_OPTIONS[kind])}")
    for key in ("width", "height", "fps"):
        if key in opts and not (opts[key].isdigit() and int(opts[key]) > 0):
            raise SourceSpecError(f"{kind} option {key} must be a positive integer, got {opts[key]!r}")
    if "seed" in opts and not opts["seed"].isdigit():
        raise SourceSpecError(f"scene option seed must be an integer >= 0, got {opts['seed']!r}")
    if kind == "scene" and any(int(opts.get(k, 64)) < 64 for k in ("width", "height")):
        raise SourceSpecError(f"a scene is at least 64x64 px, got {opts.get('width', 640)}x{opts.get('height', 480)}")
    if "latency" in opts and not opts["latency"].isdigit():
        raise SourceSpecError(f"rtsp latency is in milliseconds (an integer >= 0), got {opts['latency']!r}")
    if kind == "test" and opts.get("pattern", "ball") not in _PATTERNS:
        raise SourceSpecError(f"unknown test pattern {opts['pattern']!r}; one of {sorted(_PATTERNS)}")
    if kind == "v4l2" and opts.get("format", "mjpeg") not in ("mjpeg", "raw"):
        raise SourceSpecError(f"v4l2 format must be mjpeg or raw, got {opts['format']!r}")
    if kind == "rtsp" and opts.get("transport", "tcp") not in ("tcp", "udp"):
        raise SourceSpecError(f"rtsp transport must be tcp or udp, got {opts['transport']!r}")
    return SourceSpec(kind, location, opts)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _caps(media: str, opts: dict[str, str]) -> str:
    parts = [media] + [f"{k}={opts[k]}" for k in ("width", "height") if k in opts]
    if "fps" in opts:
        parts.append(f"framerate={opts['fps']}/1")
    return ",".join(parts)


def source_description(spec: SourceSpec) -> str:
    """The launch description of the source part, up to decoded video."""
    o = spec.options
    if spec.kind == "test":
        caps = _caps("video/x-raw", {"width": str(TEST_SIZE[0]), "height": str(TEST_SIZE[1]), "fps": "30", **o})
        return f"videotestsrc is-live=true pattern={o.get('pattern', 'ball')} ! {caps}"
    if spec.kind == "file":
        return f"filesrc location={_quote(spec.location)} ! decodebin"
    if spec.kind == "v4l2":
        if o.get("format", "mjpeg") == "mjpeg":
            return f"v4l2src device={_quote(spec.location)} ! {_caps('image/jpeg', o)} ! jpegdec"
        return f"v4l2src device={_quote(spec.location)} ! {_caps('video/x-raw', o)}"
    if spec.kind == "rtsp":
        protocols = "tcp" if o.get("transport", "tcp") == "tcp" else "udp"
        return (f"rtspsrc location={_quote(spec.location)} latency={o.get('latency', '200')} "
                f"protocols={protocols} ! decodebin")
    return spec.location


def sink_description(live: bool, realtime: bool = False) -> str:
    """Conversion to RGB and samtrack's appsink.

    Live: the appsink keeps only the newest buffer (the frame queue counts what is dropped).
    Files: nothing is dropped; sync=true paces a file to real time when asked.
    """
    sync = "true" if realtime else "false"
    keep = "max-buffers=1 drop=true" if live else "max-buffers=4 drop=false"
    return (f"videoconvert ! video/x-raw,format=RGB ! appsink name={SINK_NAME} emit-signals=true "
            f"sync={sync} {keep}")


def launch_description(spec: SourceSpec) -> str:
    """The whole pipeline for a source: source part, then samtrack's conversion and sink."""
    realtime = spec.kind == "file" and spec.options.get("realtime", "0") not in ("0", "", "false")
    return f"{source_description(spec)} ! {sink_description(spec.live, realtime)}"
