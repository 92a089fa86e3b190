"""A stand-in for systemd's notify socket, for the benchmarks and tests that watch a daemon's sd_notify
messages (READY=1, WATCHDOG=1, STATUS=...)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET; records (time, message)."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def between(self, t0: float, t1: float, prefix: str) -> list[str]:
        return [m for t, m in self.messages if t0 <= t < t1 and m.startswith(prefix)]

    def wait_for(self, prefix: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(m.startswith(prefix) for _, m in self.messages):
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self._stop.set()
        self._t.join(timeout=2)
        self.sock.close()
