"""Starting `samtrack serve` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from tracker.client import spawn
from tracker.client.spawn import DaemonProcess
from tracker.protocol.curve import CurveClient, authorize_client, generate_keys


def start_daemon(*extra: str, source: str | None = "test:?width=160&height=120&fps=15", image_size: int = 64,
                 wait_s: float = 120.0, env: dict[str, str] | None = None, curve: CurveClient | None = None,
                 wait_for_frame: bool = True, endpoints: tuple[str, str] | None = None,
                 log: Path | None = None, stream: str = "test", motion: bool = False,
                 backend: str | None = "torch") -> DaemonProcess:
    """A small, single-threaded daemon for tests on loopback (metrics on a free port, `stream` on
    `source`; source None: the streams come with `extra`), returned once it answers ping (bounded wait);
    `endpoints` (results, commands) reuses a stopped daemon's ports; `log` receives its output. Frames between
    key frames are dropped (`--between-key-frames drop`: the model's frames only, as these tests count them)
    unless `motion` (the default of `samtrack serve`, tested in tests/test_motion_daemon.py). The engines are torch's
    unless `backend` says otherwise (None: the config's or auto, as `serve` picks): loading OpenVINO's compiled graphs
    costs every start 1-2 s of these 2 cores, and the tests of the engines start their own daemons."""
    one = ["--source", source, "--stream", stream] if source is not None else []
    between = [] if motion else ["--between-key-frames", "drop"]
    engines = ["--backend", backend] if backend is not None else []
    return spawn.start_daemon([*one, "--image-size", str(image_size), "--threads", "1", *engines,
                               "--metrics-port", "0", *between, *extra], endpoints=endpoints, wait_s=wait_s,
                              need_frame=wait_for_frame, curve=curve, env=env, log=log)


# The present checkpoints written in this process: the next one asked for is a hard link to one of them (the same
# seeded bytes; building and writing its 156 MB took 1-3 s each, for a dozen tests).
_written: list[Path] = []


def present_checkpoint(path: Path) -> Path:
    """A checkpoint file in Meta's format of seeded random weights with objects forced present
    (tracker.models.seeded_model): a daemon given it (`--checkpoint`) publishes masks that are not empty."""
    import torch

    from tracker.models import seeded_model

    if path.exists():
        return path
    for first in (p for p in _written if p.exists()):
        try:
            os.link(first, path)
            return path
        except OSError:  # another file system: written below
            break
    torch.save({"model": seeded_model("sam2.1_hiera_t", image_size=64, present=True).state_dict()}, path)
    _written.append(path)
    return path


def curve_config(directory: Path, client: str) -> tuple[Path, CurveClient]:
    """A daemon config file with CurveZMQ on (keys under directory/keys) and one authorised client's keys."""
    keys, allowed = directory / "keys", directory / "allowed"
    server_pub, server_secret = generate_keys(keys, "server")
    client_pub, client_secret = generate_keys(keys, client)
    authorize_client(client_pub, allowed)
    cfg = directory / "curve.toml"
    cfg.write_text(f"[auth]\ncurve = true\nserver_secret_key = '{server_secret}'\nauthorized_clients = '{allowed}'\n")
    return cfg, CurveClient(str(client_secret), str(server_pub))


def scrape_metrics(port: int) -> dict[str, float]:
    """A daemon's Prometheus metrics: sample name with labels -> value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def served_streams(c) -> list[str] | None:
    """The streams a daemon or broker says it serves; None while it cannot say (no daemon has answered a
    broker yet, or no reply in time)."""
    from tracker.client import RemoteError

    try:
        return c.ping()["streams"]
    except (TimeoutError, RemoteError):
        return None
