"""A synthetic scene (pipelines/scenes.py) as a live camera: `scene:NAME[?width=&height=&fps=&seed=]`, frames at
the camera's pace from a thread of its own, the newest winning as from any live source. A fake camera whose true
masks are known: the frame's index names the scene's frame."""

from __future__ import annotations

import threading
import time

from .base import QueuedSource, StreamInfo
from .frame import Frame
from .scenes import Scene
from .spec import SourceSpec, parse_source


class SceneSource(QueuedSource):
    def __init__(self, spec: SourceSpec | str, start_timeout: float = 10.0):
        super().__init__(parse_source(spec) if isinstance(spec, str) else spec, start_timeout)
        o = self.spec.options
        self.scene = Scene(self.spec.location, int(o.get("width", 640)), int(o.get("height", 480)),
                           int(o.get("seed", 0)))
        self.fps = float(o.get("fps", 15))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StreamInfo:
        self.info = StreamInfo(self.scene.width, self.scene.height, self.fps, f"scene {self.scene.name}")
        self._thread = threading.Thread(target=self._run, name=f"scene-{self.scene.name}", daemon=True)
        self._thread.start()
        return self.info

    def read(self, timeout: float = 1.0) -> Frame | None:
        return self._queue.get(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._queue.close()
        if self._thread is not None:
            self._thread.join(2.0)

    def _run(self) -> None:
        period, start, i = 1.0 / self.fps, time.monotonic(), 0
        while not self._stop.is_set():
            image = self.scene.frame(i).image
            frame = Frame(i, round(i * period * 1e9), time.monotonic_ns(), image)
            if not self._queue.put(frame):
                return
            i += 1
            self._stop.wait(max(0.0, start + i * period - time.monotonic()))  # the camera's clock, not the renderer's
