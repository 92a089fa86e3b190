"""Starting `samtrack serve` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from tests.gst_helpers import free_port
from tracker.client import Client
from tracker.security import CurveClient


@dataclass
class DaemonProcess:
    proc: subprocess.Popen
    results: str
    commands: str

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def start_daemon(*extra: str, source: str = "test:?width=160&height=120&fps=15", image_size: int = 64,
                 wait_s: float = 120.0, env: dict[str, str] | None = None, curve: CurveClient | None = None,
                 wait_for_frame: bool = True) -> DaemonProcess:
    """A daemon on loopback ports (metrics on a free port), returned once it answers ping (bounded wait)."""
    results, commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "tracker.cli", "serve", "--source", source, "--image-size", str(image_size),
           "--results", results, "--commands", commands, "--threads", "1", "--stream", "test",
           "--metrics-port", "0", *extra]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = DaemonProcess(proc, results, commands)
    deadline = time.monotonic() + wait_s
    with Client(commands, timeout=1.0, curve=curve) as c:
        while True:
            try:
                if c.ping()["frame"] is not None or not wait_for_frame:
                    return d
            except TimeoutError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                d.stop()
                raise RuntimeError(f"daemon did not start (exit code {proc.returncode})")
            time.sleep(0.2)
