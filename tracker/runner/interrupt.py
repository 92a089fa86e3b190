"""Ctrl-C during an offline run: the first stops it after the frame in progress, so every output holds whole
frames; a second one stops it at once."""

from __future__ import annotations

import signal
import threading


class StopOnInterrupt:
    """While active (`with`), SIGINT sets `requested` instead of raising; a second SIGINT raises KeyboardInterrupt.
    Off the main thread (where Python runs signal handlers) it changes nothing."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
