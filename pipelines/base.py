"""What every frame source shares: a bounded frame queue, iteration until end of stream, `with`."""

from __future__ import annotations

from abc import ABC, abstractmethod

from .errors import EndOfStream, SourceTimeoutError
from .frame import Frame
from .framequeue import FrameQueue, Policy
from .spec import SourceSpec

# Frames buffered between the capture thread and the consumer. Live: 1, the newest frame wins.
# Files: a few, so decoding runs ahead of tracking without holding much memory.
LIVE_QUEUE = 1
FILE_QUEUE = 4


class QueuedSource(ABC):
    """Base of the GStreamer and OpenCV sources: subclasses fill `_queue`, implement start/read/stop."""

    def __init__(self, spec: SourceSpec, start_timeout: float):
        self.spec, self.start_timeout = spec, start_timeout
        self._queue = FrameQueue(LIVE_QUEUE if spec.live else FILE_QUEUE,
                                 Policy.LATEST if spec.live else Policy.BLOCK)

    @abstractmethod
    def start(self):
        """Open the capture; return once the first frame arrived (StreamInfo), raise if it cannot."""

    @abstractmethod
    def read(self, timeout: float = 1.0) -> Frame | None:
        """The next frame, None after `timeout` s, EndOfStream at the end, SourceError on failure."""

    @abstractmethod
    def stop(self) -> None:
        """Release the capture; safe to call twice."""

    @property
    def what(self) -> str:
        return f"source {self.spec.kind}:{self.spec.location}" if self.spec.kind != "test" else "test source"

    @property
    def dropped(self) -> int:
        """Frames that arrived but were replaced by a newer one before the consumer read them."""
        return self._queue.dropped

    def __iter__(self):
        """Every frame until the end of the stream; a wait longer than start_timeout raises."""
        while True:
            try:
                frame = self.read(self.start_timeout)
            except EndOfStream:
                return
            if frame is None:
                raise SourceTimeoutError(f"{self.what} gave no frame within {self.start_timeout:.0f} s")
            yield frame

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
