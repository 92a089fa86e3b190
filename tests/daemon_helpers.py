"""Starting `samtrack serve` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tracker.client.spawn import free_port, spawn_daemon, stop_daemon, wait_ready
from tracker.protocol.curve import CurveClient, authorize_client, generate_keys


@dataclass
class DaemonProcess:
    proc: subprocess.Popen
    results: str
    commands: str

    def stop(self, timeout: float = 10.0) -> int:
        return stop_daemon(self.proc, timeout)


def start_daemon(*extra: str, source: str = "test:?width=160&height=120&fps=15", image_size: int = 64,
                 wait_s: float = 120.0, env: dict[str, str] | None = None, curve: CurveClient | None = None,
                 wait_for_frame: bool = True, endpoints: tuple[str, str] | None = None,
                 log: Path | None = None) -> DaemonProcess:
    """A daemon on loopback ports (metrics on a free port), returned once it answers ping (bounded wait);
    `endpoints` (results, commands) reuses a stopped daemon's ports; `log` receives its output."""
    results, commands = endpoints or (f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}")
    proc = spawn_daemon(["--source", source, "--image-size", str(image_size), "--results", results,
                         "--commands", commands, "--threads", "1", "--stream", "test", "--metrics-port", "0",
                         *extra], env=env, log=log)
    d = DaemonProcess(proc, results, commands)
    try:
        wait_ready(proc, commands, wait_s, need_frame=wait_for_frame, curve=curve)
    except RuntimeError:
        d.stop()
        raise
    return d


def curve_config(directory: Path, client: str) -> tuple[Path, CurveClient]:
    """A daemon config file with CurveZMQ on (keys under directory/keys) and one authorised client's keys."""
    keys, allowed = directory / "keys", directory / "allowed"
    server_pub, server_secret = generate_keys(keys, "server")
    client_pub, client_secret = generate_keys(keys, client)
    authorize_client(client_pub, allowed)
    cfg = directory / "curve.toml"
    cfg.write_text(f"[auth]\ncurve = true\nserver_secret_key = '{server_secret}'\nauthorized_clients = '{allowed}'\n")
    return cfg, CurveClient(str(client_secret), str(server_pub))
