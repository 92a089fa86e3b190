"""The hand-off between a capture thread and the consumer, with its backpressure policy named."""

from __future__ import annotations

import threading
import time
from collections import deque
from enum import Enum

from .frame import Frame


class Policy(Enum):
    """LATEST: live sources; a full queue drops its oldest frame (counted) so latency never builds up.
    BLOCK: files; a full queue blocks the producer, so no frame is lost."""

    LATEST = "latest"
    BLOCK = "block"


class FrameQueue:
    """A bounded queue of frames; `close()` wakes every waiter and makes `put` refuse."""

    def __init__(self, maxsize: int, policy: Policy):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize, self.policy = maxsize, policy
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0  # frames discarded under Policy.LATEST

    def put(self, frame: Frame) -> bool:
        """Add a frame; False once the queue is closed (the producer should stop)."""
        with self._cond:
            while self.policy is Policy.BLOCK and len(self._items) >= self.maxsize and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                return False
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(frame)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Frame | None:
        """The oldest queued frame, waiting up to `timeout` seconds; None if none came."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._items and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if not self._items:
                return None
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
