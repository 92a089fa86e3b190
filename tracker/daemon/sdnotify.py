"""systemd's notify protocol, spoken directly over $NOTIFY_SOCKET (a unix datagram socket)."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING to systemd; does nothing when not run by systemd."""

    def __init__(self, env: dict[str, str] | None = None):
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr = ("\0" + addr[1:]) if addr.startswith("@") else addr  # '@' is the abstract namespace
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if addr else None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # Ping at half the watchdog interval, as systemd recommends; None when no watchdog is set.
        self.watchdog_interval_s = (int(usec) / 1e6 / 2) if usec.isdigit() and (not pid or pid == str(os.getpid())) \
            else None

    def send(self, *fields: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._addr)
        except OSError as e:  # systemd going away must not take the daemon down
            log.debug("sd_notify failed: %s", e)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
