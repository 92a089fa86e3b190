"""Stopping on SIGINT/SIGTERM without ever blocking in the handler: it sets a flag (async-signal-safe work
only, no lock another frame of the main thread may hold) and, inside a tracking step or a request, raises
`Interrupted` so a stop never waits for one."""

from __future__ import annotations

import signal


class Interrupted(BaseException):
    """Raised by the signal handler inside a tracking step or a request. A BaseException: the per-frame and
    per-request error handling must not swallow it."""


class StopFlag:
    """`stop()` from anywhere (a handler, another thread); `stopped` read by the loop. A plain attribute:
    setting it takes no lock, so a signal arriving while the main thread holds one cannot deadlock."""

    def __init__(self):
        self.stopped = False
        self.busy = False  # inside a step or a request: a signal interrupts it

    def stop(self) -> None:
        self.stopped = True

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        self.stopped = True
        if self.busy:
            raise Interrupted(signal.Signals(signum).name)
