"""Video outputs fed through appsrc: a file, a display window, an RTSP server."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from .errors import SinkError
from .gst import GLib, Gst, element_available, error_from_message, parse_launch, require_gst
from .outputs import FILE_CHAINS, video_extension

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0  # bound on waiting for the encoder to flush at close
# While appsrc's queue is full, how often a push looks for an error on the bus: short beside a frame's encoding,
# so a pipeline that keeps up is fed without a gap, and one stopped by an error (a full disk) is seen at once.
FULL_QUEUE_POLL_S = 0.005


def file_encoder_chain(path: str | os.PathLike) -> str:
    """The encoder and muxer for a file name's extension, from what is installed."""
    ext = video_extension(path)
    for element, chain in FILE_CHAINS[ext]:
        if element_available(element):
            return chain
    raise SinkError(f"no encoder for {ext} is installed (tried {[e for e, _ in FILE_CHAINS[ext]]})")


def _buffer(image: np.ndarray):
    """A GStreamer buffer holding a copy of the image, rows padded to 4 bytes as GStreamer's RGB layout wants."""
    h, w = image.shape[:2]
    stride = (w * 3 + 3) & ~3
    if stride != w * 3:
        padded = np.zeros((h, stride), np.uint8)
        padded[:, : w * 3] = image.reshape(h, w * 3)
        image = padded
    data = np.ascontiguousarray(image).tobytes()
    buf = Gst.Buffer.new_allocate(None, len(data), None)
    buf.fill(0, data)
    return buf


def appsrc_caps(width: int, height: int, fps: float) -> str:
    return f"video/x-raw,format=RGB,width={width},height={height},framerate={int(round(fps * 1000))}/1000"


class AppsrcSink:
    """Frames pushed into `appsrc ! videoconvert ! <tail>`, timestamped at a fixed rate."""

    def __init__(self, tail: str, width: int, height: int, fps: float, live: bool = False):
        require_gst()
        self.width, self.height, self.fps = width, height, fps
        self._max_bytes = 4 * (width * 3 + 3) * height  # appsrc's queue: four frames
        self.description = (f"appsrc name=src is-live={'true' if live else 'false'} format=time block=true "
                            f"max-bytes={self._max_bytes} caps={appsrc_caps(width, height, fps)} "
                            f"! videoconvert ! {tail}")
        self._pipeline = parse_launch(self.description)
        self._src = self._pipeline.get_by_name("src")
        self._bus = self._pipeline.get_bus()
        self.frames = 0
        if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._check()
            raise SinkError(f"output pipeline failed to start: {self.description}")

    def push(self, image: np.ndarray) -> None:
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise SinkError(f"output expects {self.height}x{self.width}x3 uint8, got {image.shape} {image.dtype}")
        buf = _buffer(image)
        buf.pts = int(self.frames * Gst.SECOND / self.fps)
        buf.duration = int(Gst.SECOND / self.fps)
        self.frames += 1
        self._wait_for_room()
        if self._src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
            self._check()
            raise SinkError("output pipeline refused a frame")
        self._check()

    def close(self) -> None:
        """Finish the stream (encoders flush, files get their index) and release the pipeline."""
        if self._pipeline is None:
            return
        self._src.emit("end-of-stream")
        msg = self._bus.timed_pop_filtered(int(CLOSE_TIMEOUT_S * Gst.SECOND),
                                           Gst.MessageType.EOS | Gst.MessageType.ERROR)
        self._pipeline.set_state(Gst.State.NULL)
        self._pipeline = None
        if msg is not None and msg.type == Gst.MessageType.ERROR:
            raise SinkError(str(error_from_message(msg, "output")))

    def _wait_for_room(self) -> None:
        """Until appsrc's queue has room, or the bus has an error: a blocking push into a full queue would wait
        forever once the pipeline has stopped on an error (a full disk)."""
        while self._src.get_property("current-level-bytes") >= self._max_bytes:
            msg = self._bus.timed_pop_filtered(int(FULL_QUEUE_POLL_S * Gst.SECOND), Gst.MessageType.ERROR)
            if msg is not None:
                raise SinkError(str(error_from_message(msg, "output")))

    def _check(self) -> None:
        msg = self._bus.pop_filtered(Gst.MessageType.ERROR)
        if msg is not None:
            raise SinkError(str(error_from_message(msg, "output")))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _filesink(path: str | os.PathLike) -> str:
    """A filesink element for a path whose directory exists."""
    p = Path(path)
    if not p.parent.is_dir():
        raise SinkError(f"output directory does not exist: {p.parent}")
    location = str(p).replace("\\", "\\\\").replace('"', '\\"')
    return f'filesink location="{location}"'


class VideoFileSink(AppsrcSink):
    """Frames to a video file; the codec follows the extension (.mp4 H.264 where x264 is installed)."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float):
        super().__init__(f"{file_encoder_chain(path)} ! {_filesink(path)}", width, height, fps)


class LosslessFileSink(AppsrcSink):
    """Frames to Matroska with FFV1 in BGRx: lossless, decoded back bit for bit by any FFV1 decoder."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float):
        if not element_available("avenc_ffv1"):
            raise SinkError("avenc_ffv1 is not installed (Debian: gstreamer1.0-libav)")
        # Unbuffered: what the muxer wrote is on disk, so a killed process leaves every frame it had encoded.
        super().__init__(f"video/x-raw,format=BGRx ! avenc_ffv1 ! matroskamux ! {_filesink(path)} "
                         "buffer-mode=unbuffered", width, height, fps)


class DisplaySink(AppsrcSink):
    """Frames in a window, where a display exists."""

    def __init__(self, width: int, height: int, fps: float):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SinkError("no display: DISPLAY / WAYLAND_DISPLAY is not set (write a file or serve RTSP instead)")
        super().__init__("autovideosink sync=false", width, height, fps, live=True)


class RtspServerSink:
    """An RTSP server (gst-rtsp-server) on address:port/mount that serves the frames pushed to it."""

    def __init__(self, width: int, height: int, fps: float, port: int = 8554, mount: str = "/samtrack",
                 address: str = "127.0.0.1"):
        require_gst()
        try:
            import gi

            gi.require_version("GstRtspServer", "1.0")
            from gi.repository import GstRtspServer
        except (ImportError, ValueError) as e:
            raise SinkError(f"gst-rtsp-server bindings are missing ({e}): install gir1.2-gst-rtsp-server-1.0") from e
        if not element_available("x264enc"):
            raise SinkError("the RTSP output needs x264enc (gstreamer1.0-plugins-ugly)")
        self.width, self.height, self.fps = width, height, fps
        self.url = f"rtsp://{address}:{port}{mount}"
        self._appsrcs: list = []
        self._lock = threading.Lock()
        self.frames = 0
        self._server = GstRtspServer.RTSPServer(address=address, service=str(port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( appsrc name=src is-live=true format=time do-timestamp=true "
                           f"caps={appsrc_caps(width, height, fps)} ! videoconvert ! "
                           f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! "
                           f"rtph264pay name=pay0 pt=96 config-interval=1 )")
        factory.set_shared(True)
        factory.connect("media-configure", self._on_media)
        self._server.get_mount_points().add_factory(mount, factory)
        self._context = GLib.MainContext.new()
        if self._server.attach(self._context) == 0:
            raise SinkError(f"cannot serve RTSP on {address}:{port} (port in use?)")
        self._loop = GLib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-server", daemon=True)
        self._thread.start()
        log.info("RTSP output at %s", self.url)

    def _on_media(self, factory, media) -> None:
        src = media.get_element().get_child_by_name("src")
        with self._lock:
            self._appsrcs.append(src)
        media.connect("unprepared", lambda m: self._drop(src))

    def _drop(self, src) -> None:
        with self._lock:
            if src in self._appsrcs:
                self._appsrcs.remove(src)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._appsrcs)

    def push(self, image: np.ndarray) -> None:
        """Send a frame to every connected viewer (none connected: the frame is not encoded)."""
        if image.shape != (self.height, self.width, 3):
            raise SinkError(f"RTSP output expects {self.height}x{self.width}x3 frames, got {image.shape}")
        with self._lock:
            srcs = list(self._appsrcs)
        for src in srcs:
            src.emit("push-buffer", _buffer(image))
        self.frames += 1

    def close(self) -> None:
        self._loop.quit()
        self._thread.join(timeout=2.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
