"""OpenCV capture as a fallback source (files and cameras) where GStreamer's bindings are missing."""

from __future__ import annotations

import logging
import os
import threading
import time

from .base import QueuedSource, StreamInfo
from .errors import EndOfStream, NotAVideoError, SourceNotFoundError, SourceSpecError, SourceTimeoutError
from .frame import Frame
from .spec import SourceSpec, parse_source

log = logging.getLogger(__name__)


class OpenCvSource(QueuedSource):
    """Same interface as GstSource (start, read, stop, dropped, info) over cv2.VideoCapture."""

    def __init__(self, spec: SourceSpec | str, start_timeout: float = 10.0):
        import cv2

        self._cv2 = cv2
        super().__init__(parse_source(spec) if isinstance(spec, str) else spec, start_timeout)
        if self.spec.kind not in ("file", "v4l2"):
            raise SourceSpecError(f"the OpenCV fallback reads files and cameras only, not {self.spec.kind}: "
                                  f"install GStreamer's Python bindings (./setup.sh)")
        self._cap = None
        self._thread: threading.Thread | None = None
        self._eos = threading.Event()
        self._stop = threading.Event()

    def start(self) -> StreamInfo:
        cv2, spec = self._cv2, self.spec
        log.warning("using the OpenCV fallback for %s (GStreamer bindings unavailable or not chosen)", spec.location)
        if not os.path.exists(spec.location):
            raise SourceNotFoundError(f"{'file' if spec.kind == 'file' else 'camera'} not found: {spec.location}")
        target = spec.location
        if spec.kind == "v4l2" and spec.location.startswith("/dev/video"):
            target = int(spec.location[len("/dev/video"):])
        self._cap = cv2.VideoCapture(target)
        if spec.kind == "v4l2":
            for key, prop in (("width", cv2.CAP_PROP_FRAME_WIDTH), ("height", cv2.CAP_PROP_FRAME_HEIGHT),
                              ("fps", cv2.CAP_PROP_FPS)):
                if key in spec.options:
                    self._cap.set(prop, float(spec.options[key]))
        if not self._cap.isOpened():
            raise NotAVideoError(f"OpenCV cannot open {spec.location} as video")
        self._thread = threading.Thread(target=self._run, name="opencv-capture", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while len(self._queue) == 0:
            if self._eos.is_set():
                self.stop()
                raise NotAVideoError(f"OpenCV read no frame from {spec.location}")
            if time.monotonic() > deadline:
                self.stop()
                raise SourceTimeoutError(f"{spec.location} gave no frame within {self.start_timeout:.0f} s")
            time.sleep(0.01)
        return self.info

    def _run(self) -> None:
        cv2, index = self._cv2, 0
        while not self._stop.is_set():
            ok, bgr = self._cap.read()
            now = time.monotonic_ns()
            if not ok:
                break
            if self.info is None:
                fps = self._cap.get(cv2.CAP_PROP_FPS)
                self.info = StreamInfo(bgr.shape[1], bgr.shape[0], fps if fps > 0 else None, "opencv BGR->RGB")
            pts_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            frame = Frame(index, int(pts_ms * 1e6) if pts_ms >= 0 else None, now,
                          cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
            if not self._queue.put(frame):
                break
        self._eos.set()
        self._queue.close()  # wakes a reader waiting for a frame that will never come; queued frames stay readable

    def read(self, timeout: float = 1.0) -> Frame | None:
        frame = self._queue.get(timeout)
        if frame is None and self._eos.is_set() and len(self._queue) == 0:
            raise EndOfStream(self.spec.location)
        return frame

    def stop(self) -> None:
        self._stop.set()
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._cap is not None:
            self._cap.release()
            self._cap = None
