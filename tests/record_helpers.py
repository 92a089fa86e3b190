"""What the tests of `serve --record` and `samtrack replay` share: waiting for frames, a replay as a real
subprocess, a recording's timeline records, and the weights recordings are made with."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon_helpers import present_checkpoint
from tracker.client import Client
from tracker.client.spawn import free_port
from tracker.recording.format import segment_paths, segments


def wait_frames(c: Client, n: int, timeout: float = 60.0) -> int:
    """Until the daemon's latest frame number has moved n past where it was (bounded); the latest then."""
    start = c.ping()["frame"] or 0
    deadline = time.monotonic() + timeout
    while (c.ping()["frame"] or 0) < start + n and time.monotonic() < deadline:
        time.sleep(0.1)
    return c.ping()["frame"]


def replay(directory: Path, *args: str, checkpoint: Path | None = None, timeout: float = 300
           ) -> subprocess.CompletedProcess:
    """`samtrack replay DIR ARGS` on free loopback ports, to its end."""
    endpoints = ["--results", f"tcp://127.0.0.1:{free_port()}", "--commands", f"tcp://127.0.0.1:{free_port()}"]
    weights = ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
    return subprocess.run([sys.executable, "-m", "tracker.cli", "replay", str(directory), *endpoints, *weights,
                           *args], capture_output=True, text=True, timeout=timeout)


def records(directory: Path) -> list[dict]:
    """Every timeline record of a recording, segment after segment."""
    return [json.loads(line) for n in segments(directory) for line in segment_paths(directory, n)[1].read_text()
            .splitlines()]


def frame_count(directory: Path) -> int:
    """The frames a recording holds."""
    return sum(1 for x in records(directory) if x["kind"] == "frame")


def complete(directory: Path) -> Path:
    """A config whose recorder competes for the CPU (idle_priority off): on a busy machine a SCHED_IDLE writer
    would lose frames, which the tests of lost frames cover; these need every frame."""
    cfg = directory / "complete.toml"
    cfg.write_text("[record]\nidle_priority = false\n")
    return cfg


def weights_file(tmp_path_factory) -> Path:
    """The recordings' weights: objects forced present, so their masks are not empty (replays pass them too).
    Written once per session, under pytest's base temporary directory, for every module that asks."""
    return present_checkpoint(tmp_path_factory.getbasetemp() / "present.pt")
