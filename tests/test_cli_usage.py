"""What a new user meets on the command line: a busy port, bad numbers, a missing prompt or daemon end in one
line and exit code 2 before any model loads; every option says what it is for; Ctrl-C says what was kept."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _samtrack(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """The command ended with exit code 2 and one line on stderr (no traceback, no model's log before it)."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("samtrack: error:"), \
        (r.returncode, r.stderr[-3000:])
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.fixture()
def busy_port():
    """A TCP port something listens on (another daemon, as far as samtrack can tell)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("flags", ["--metrics-port {}", "--results tcp://127.0.0.1:{} --no-metrics",
                                   "--commands tcp://127.0.0.1:{} --no-metrics"])
def test_a_busy_port_ends_serve_in_one_line_before_the_model_loads(busy_port, flags):
    """A second `samtrack serve` on a host (the default metrics port 9105 taken): a 42-line traceback and exit 1
    once the model had loaded; now one line naming the port and what to pass, exit 2, before anything loads."""
    r = _samtrack("serve", "--source", "test:", "--image-size", "64", *flags.format(busy_port).split())
    _one_line_error(r, str(busy_port), "in use", "--")


def _argument_error(r: subprocess.CompletedProcess, option: str, *words: str) -> str:
    """argparse's refusal of one argument: exit code 2, its usage and one error line naming the option, no
    traceback."""
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert r.returncode == 2 and "Traceback" not in r.stderr and f"error: argument {option}" in last, \
        (r.returncode, r.stderr[-3000:])
    assert all(w in last for w in words), last
    return last


@pytest.mark.parametrize("command", ["track test: --frames 1 --point 1,1 --masks {tmp}/m.jsonl",
                                     "segment {tmp}/x.png --point 1,1", "demo", "serve --source test:",
                                     "export", "bench step --quick"])
@pytest.mark.parametrize("size", ["255", "500", "0"])
def test_an_image_size_the_model_cannot_take_is_refused_as_it_is_parsed(tmp_path, command, size):
    """track/segment --image-size 255 (or 500, 0) ended in a traceback and exit 1 once the model was built;
    demo --image-size 300 in exit 1 with the daemon's message second-hand. Now each command refuses it as it is
    parsed, saying which size to use."""
    (tmp_path / "x.png").write_bytes(b"")
    r = _samtrack(*command.format(tmp=tmp_path).split(), "--image-size", size, timeout=120)
    _argument_error(r, "--image-size", "not a multiple of 32", "use ")
