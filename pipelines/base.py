"""The `Source` protocol the daemon depends on, and what the GStreamer and OpenCV sources share: a bounded
frame queue, iteration until end of stream, `with`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from .errors import EndOfStream, SourceTimeoutError
from .frame import Frame
from .framequeue import FrameQueue, Policy
from .spec import SourceSpec

# Frames buffered between the capture thread and the consumer. Live: 1, the newest frame wins.
# Files: a few, so decoding runs ahead of tracking without holding much memory.
LIVE_QUEUE = 1
FILE_QUEUE = 4


@dataclass(frozen=True)
class StreamInfo:
    """What the first frame's caps say about the stream."""

    width: int
    height: int
    fps: float | None  # None for a variable or unknown rate
    caps: str


class Source(Protocol):
    """A frame source: every source samtrack opens implements this, and the daemon needs nothing else."""

    spec: SourceSpec

    def start(self) -> StreamInfo | None:
        """Open the capture; return once the first frame arrived, raise SourceError if it cannot."""

    def read(self, timeout: float = 1.0) -> Frame | None:
        """The next frame, None after `timeout` s, EndOfStream at the end, SourceError on failure."""

    def stop(self) -> None:
        """Release the capture; safe to call twice."""

    @property
    def info(self) -> StreamInfo | None:
        """The stream's size and rate once started (None before, or while a live source reconnects)."""

    @property
    def dropped(self) -> int:
        """Frames that arrived but were replaced by a newer one before they were read."""

    @property
    def reconnects(self) -> int:
        """Successful restarts after a failure (0 for sources that do not reconnect)."""

    @property
    def connected(self) -> bool:
        """Whether frames can arrive now (False while a live source waits to reconnect)."""

    @property
    def last_error(self) -> str | None:
        """Why the source last failed or could not start (None if it never did)."""


class QueuedSource(ABC):
    """Base of the GStreamer and OpenCV sources: subclasses fill `_queue`, implement start/read/stop."""

    def __init__(self, spec: SourceSpec, start_timeout: float):
        self.spec, self.start_timeout = spec, start_timeout
        self._queue = FrameQueue(LIVE_QUEUE if spec.live else FILE_QUEUE,
                                 Policy.LATEST if spec.live else Policy.BLOCK)
        self.info: StreamInfo | None = None
        self.reconnects = 0  # these sources never reconnect themselves (ReconnectingSource wraps them)
        self.last_error: str | None = None  # they raise instead

    @abstractmethod
    def start(self) -> StreamInfo:
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

    @property
    def connected(self) -> bool:
        return self.info is not None

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
