"""Running `samtrack serve` as a child process: start it, wait until it answers, stop it cleanly.
Used by `samtrack demo`, the end-to-end benchmarks and the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..protocol.curve import CurveClient
from .commands import Client


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for daemons and test servers)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_daemon(serve_args: list[str], env: dict[str, str] | None = None, quiet: bool = True,
                 log: Path | None = None) -> subprocess.Popen:
    """`python -m tracker.cli serve <serve_args>` with this interpreter; its output goes to `log` when
    given, else nowhere (quiet) or to this process's terminal."""
    out = open(log, "wb") if log is not None else subprocess.DEVNULL if quiet else None
    try:
        return subprocess.Popen([sys.executable, "-m", "tracker.cli", "serve", *serve_args],
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT if log is not None else out)
    finally:
        if log is not None:
            out.close()  # the child holds its own descriptor


def wait_ready(proc: subprocess.Popen, commands: str, timeout_s: float = 180.0, need_frame: bool = True,
               curve: CurveClient | None = None) -> None:
    """Return once the daemon answers ping (and has tracked a frame, on any of its streams, if need_frame);
    raise if it exits or the time runs out (bounded: model loading can take a while on a CPU)."""
    deadline = time.monotonic() + timeout_s
    with Client(commands, timeout=1.0, curve=curve) as c:
        while True:
            try:
                ping = c.ping()
                statuses = ping["per_stream"].values() if "per_stream" in ping else [ping]
                if not need_frame or any(st["frame"] is not None for st in statuses):
                    return
            except TimeoutError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with code {proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not answer on {commands} within {timeout_s:.0f} s")
            time.sleep(0.2)


def stop_daemon(proc: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within timeout_s; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


@dataclass
class DaemonProcess:
    """A started `samtrack serve` child and its endpoints."""

    proc: subprocess.Popen
    results: str
    commands: str

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM (then SIGKILL after timeout_s); the exit code."""
        return stop_daemon(self.proc, timeout_s)


def start_daemon(serve_args: list[str], endpoints: tuple[str, str] | None = None, wait_s: float = 180.0,
                 need_frame: bool = True, curve: CurveClient | None = None, env: dict[str, str] | None = None,
                 quiet: bool = True, log: Path | None = None) -> DaemonProcess:
    """`samtrack serve <serve_args>` on `endpoints` (results, commands; default: free loopback ports),
    returned once it answers ping (and has tracked a frame, if need_frame); stopped again if it never does."""
    results, commands = endpoints or (f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}")
    proc = spawn_daemon([*serve_args, "--results", results, "--commands", commands], env=env, quiet=quiet, log=log)
    try:
        wait_ready(proc, commands, wait_s, need_frame=need_frame, curve=curve)
    except BaseException:
        stop_daemon(proc)
        raise
    return DaemonProcess(proc, results, commands)

