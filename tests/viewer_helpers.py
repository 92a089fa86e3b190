"""`samtrack view` for the viewer's tests: the viewer as a subprocess, Chromium through Playwright."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench.chaos_watch import CHROMIUM, CHROMIUM_ARGS
from tracker.client import Client
from tracker.client.spawn import free_port, stop_daemon


class ViewerProcess:
    """`samtrack view` as a subprocess on a free loopback port."""

    def __init__(self, results: str, commands: str, *extra: str, token: str | None = "s3cret"):
        self.port, self.token = free_port(), token
        args = ["--results", results, "--commands", commands, "--port", str(self.port), *extra]
        if token:
            args += ["--token", token]
        self.proc = subprocess.Popen([sys.executable, "-m", "tracker.cli", "view", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.first_line = self.proc.stdout.readline()  # the URL line, printed once listening
        if self.proc.poll() is not None:
            raise RuntimeError(f"samtrack view exited: {self.first_line}{self.proc.stdout.read()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def stop(self) -> int:
        code = stop_daemon(self.proc)
        self.proc.stdout.close()
        return code


@contextmanager
def chromium() -> Iterator:
    """Debian's Chromium driven by Playwright (skips the test where it is not installed)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (./setup.sh installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def daemon_objects(daemon) -> list[int]:
    with Client(daemon.commands, timeout=30) as c:
        return [o["id"] for o in c.list_objects()["objects"]]
