"""A GStreamer frame source: a launch description ending in samtrack's appsink, frames through a
bounded queue, GStreamer errors as typed exceptions, end of stream as EndOfStream."""

from __future__ import annotations

import logging
import os
import time

from .base import QueuedSource, StreamInfo
from .errors import EndOfStream, SourceError, SourceNotFoundError, SourceTimeoutError
from .frame import Frame, rgb_from_buffer
from .gst import Gst, error_from_message, parse_launch, require_gst
from .spec import SINK_NAME, SourceSpec, launch_description, parse_source

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 2.0  # bound on the state change to NULL when stopping


class GstSource(QueuedSource):
    """Frames from one GStreamer pipeline. `start()` returns once the first frame has arrived."""

    def __init__(self, spec: SourceSpec | str, start_timeout: float = 10.0):
        require_gst()
        super().__init__(parse_source(spec) if isinstance(spec, str) else spec, start_timeout)
        self.description = launch_description(self.spec)
        self._pipeline = None
        self._bus = None
        self._arrived = 0
        self._eos = False

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> StreamInfo:
        if self.spec.kind == "file" and not os.path.isfile(self.spec.location):
            raise SourceNotFoundError(f"file not found: {self.spec.location}")
        if self.spec.kind == "v4l2" and not os.path.exists(self.spec.location):
            raise SourceNotFoundError(f"no camera at {self.spec.location} (is it plugged in? see `ls /dev/video*`)")
        self._pipeline = parse_launch(self.description)
        self._bus = self._pipeline.get_bus()
        sink = self._pipeline.get_by_name(SINK_NAME)
        sink.connect("new-sample", self._on_sample)
        try:
            if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                self._raise_bus_error(default=f"{self.what} failed to start")
            deadline = time.monotonic() + self.start_timeout
            while len(self._queue) == 0:
                self._poll_bus()
                if self._eos:
                    raise SourceError(f"{self.what} ended before its first frame")
                if time.monotonic() > deadline:
                    raise SourceTimeoutError(f"{self.what} gave no frame within {self.start_timeout:.0f} s")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        return self.info

    def stop(self) -> None:
        """Stop the pipeline and release it; safe to call twice."""
        self._queue.close()
        if self._pipeline is not None:
            self._pipeline.set_state(Gst.State.NULL)
            self._pipeline.get_state(int(STOP_TIMEOUT_S * Gst.SECOND))
            self._pipeline = None
            self._bus = None

    # ---- reading --------------------------------------------------------------------
    def read(self, timeout: float = 1.0) -> Frame | None:
        """The next frame, or None if none came within `timeout` s; EndOfStream at the end; SourceError on failure."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._queue.get(min(0.05, max(0.0, deadline - time.monotonic())))
            if frame is not None:
                return frame
            self._poll_bus()
            if self._eos and len(self._queue) == 0:
                raise EndOfStream(self.what)
            if time.monotonic() >= deadline:
                return None

    # ---- GStreamer side -------------------------------------------------------------
    def _on_sample(self, sink) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        now = time.monotonic_ns()
        if sample is None:
            return Gst.FlowReturn.EOS
        buf, caps = sample.get_buffer(), sample.get_caps()
        s = caps.get_structure(0)
        w, h = s.get_value("width"), s.get_value("height")
        ok, mapinfo = buf.map(Gst.MapFlags.READ)
        if not ok:
            return Gst.FlowReturn.ERROR
        try:
            image = rgb_from_buffer(mapinfo.data, w, h)
        finally:
            buf.unmap(mapinfo)
        if self.info is None:
            ok_rate, num, den = s.get_fraction("framerate")
            fps = num / den if ok_rate and num > 0 and den > 0 else None
            self.info = StreamInfo(w, h, fps, caps.to_string())
        pts = buf.pts if buf.pts != Gst.CLOCK_TIME_NONE else None
        frame = Frame(self._arrived, pts, now, image)
        self._arrived += 1
        return Gst.FlowReturn.OK if self._queue.put(frame) else Gst.FlowReturn.FLUSHING

    def _poll_bus(self) -> None:
        if self._bus is None:
            return
        while True:
            msg = self._bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.WARNING)
            if msg is None:
                return
            if msg.type == Gst.MessageType.EOS:
                self._eos = True
            elif msg.type == Gst.MessageType.WARNING:
                w, _ = msg.parse_warning()
                log.warning("%s: GStreamer warning: %s", self.what, w.message)
            else:
                raise error_from_message(msg, self.what)

    def _raise_bus_error(self, default: str) -> None:
        self._poll_bus()
        msg = self._bus.timed_pop_filtered(int(0.5 * Gst.SECOND), Gst.MessageType.ERROR) if self._bus else None
        if msg is not None:
            raise error_from_message(msg, self.what)
        raise SourceError(default)
