"""Every code block of README.md and docs/ runs as written: the Python ones in a fresh interpreter against a real
daemon (its endpoints substituted for the defaults), the JSON request of docs/protocol.md sent to one. A block
that is added without a way to run it here fails the inventory test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from tests.daemon_helpers import present_checkpoint, start_daemon

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
# The blocks this file runs, by their first line (a changed example is still run; a new one must be added here).
CLIENT, SUPERVISION, LIBRARY, REQUEST, CONCEPTS = (
    "from tracker.client import Client, Subscriber", "import cv2, numpy as np, supervision as sv",
    "from tracker import Tracker", '{"v": 1, "id": "42", "op": "add_points",',
    "from tracker.client import Client, Events, Subscriber")


def blocks() -> list[tuple[str, str, str]]:
    """(file, language, code) of every fenced code block with a language."""
    return [(p.name, m.group(1), m.group(2)) for p in DOCS for m in BLOCK.finditer(p.read_text())]


def block(first_line: str) -> str:
    found = [code for _, _, code in blocks() if code.startswith(first_line)]
    assert len(found) == 1, f"{len(found)} code blocks start with {first_line!r}"
    return found[0]


def test_every_code_block_is_run_here():
    known = (CLIENT, SUPERVISION, LIBRARY, REQUEST, CONCEPTS)
    unknown = [f"{name}: {code.splitlines()[0]}" for name, _, code in blocks() if not code.startswith(known)]
    assert unknown == [], "code blocks no test runs (add them to tests/test_docs_examples.py)"


def _with_endpoints(code: str, results: str, commands: str) -> str:
    """The example as written, talking to this daemon instead of the default endpoints."""
    return code.replace("Subscriber(", f"Subscriber({results!r}, ").replace("Client(", f"Client({commands!r}, ") \
        .replace("Events(", f"Events({results!r}, ")


def _run(code: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


class _Frames:
    """A source that lasts until the test ends it: 640x480 frames of moving shapes (the examples click at 320, 240)
    written at 10 fps into a FIFO the daemon reads as raw video (`source`), its end of stream when `end()` closes
    it. So an example that runs until the source ends is stopped once it printed what the test checks, however
    long that took, instead of after a file's fixed length."""

    W, H, FPS = 640, 480, 10

    def __init__(self, directory: Path):
        self.path = directory / "frames.rgb"
        os.mkfifo(self.path)
        self.source = (f"gst:filesrc location={self.path} ! rawvideoparse width={self.W} height={self.H} format=rgb "
                       f"framerate={self.FPS}/1")
        self.written = 0  # frames written into the FIFO so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        from pipelines.synthetic import moving_shapes_frame

        fd = os.open(self.path, os.O_WRONLY)  # once the daemon opens it
        try:
            while not self._stop.is_set():
                os.write(fd, moving_shapes_frame(self.written, self.H, self.W).tobytes())  # blocks while it lags
                self.written += 1
                time.sleep(1 / self.FPS)
        except BrokenPipeError:  # the daemon went away: its test reports why
            pass
        finally:
            os.close(fd)

    def end(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _run_until(code: str, cwd: Path, frames: _Frames, enough, timeout: float = 300) -> tuple[int, list[str], str]:
    """The example's exit code, stdout lines and stderr: it runs until `enough(lines so far)` (or `timeout` s, or
    its own exit), then the source ends and so must the example. Unbuffered, so its lines are read as printed."""
    err = cwd / "example.stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE, stderr=stderr,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while not enough(list(lines)) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        frames.end()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stdout.close()
    return rc, lines, err.read_text()


@pytest.mark.slow  # a daemon on a source paced in real time
def test_the_client_example_prints_the_clicked_objects_mask(tmp_path):
    """README's client example: a click, then every result until the source ends (it must not end before, nor
    crash on the results published before the click was served)."""
    weights = present_checkpoint(tmp_path / "present.pt")
    frames = _Frames(tmp_path)
    d = start_daemon("--checkpoint", str(weights), source=frames.source)
    try:
        # the source ends once 10 lines were printed (1 s of results after the click): the example must end too
        code, lines, err = _run_until(_with_endpoints(block(CLIENT), d.results, d.commands), tmp_path, frames,
                                      lambda lines: len(lines) >= 10)
    finally:
        frames.end()
        d.stop()
    assert code == 0, err[-3000:]
    assert len(lines) >= 10 and all(re.fullmatch(r"\d+ model \d+ [\d.]+", ln) for ln in lines), lines[-20:]


@pytest.mark.slow  # a daemon with a detector on a source paced in real time
def test_the_concept_example_prints_labelled_objects_and_their_events(tmp_path):
    """README's "Track every X" example against a daemon with OmDet-Turbo at random weights (it finds boxes all over
    at the example's threshold): labelled objects and lifecycle events, until the source ends."""
    weights = present_checkpoint(tmp_path / "present.pt")
    frames = _Frames(tmp_path)
    # a window of 128 frames (12.8 s at 10 fps): longer than a detector call here, so its answers apply
    d = start_daemon("--checkpoint", str(weights), "--detector", "omdet-turbo", "--feature-window", "128",
                     source=frames.source)

    def seen(lines: list[str]) -> bool:  # a labelled object and an appeared event: then the source ends
        return any(_object_line(ln) for ln in lines) and any(_event_line(ln) and " appeared " in ln for ln in lines)

    try:
        code, lines, err = _run_until(_with_endpoints(block(CONCEPTS), d.results, d.commands), tmp_path, frames,
                                      seen)
    finally:
        frames.end()
        d.stop()
    assert code == 0, err[-3000:]
    objects, events = [ln for ln in lines if _object_line(ln)], [ln for ln in lines if _event_line(ln)]
    assert objects and events and len(objects) + len(events) == len(lines), lines[-40:]
    assert any(" appeared " in ln for ln in events)


def _object_line(line: str) -> bool:
    return re.fullmatch(r"\d+ \d+ (tentative|confirmed|lost) [\d.]+ \d+", line) is not None


def _event_line(line: str) -> bool:
    return re.fullmatch(r"\d+ (appeared|confirmed|lost|refound|retracted|removed) \d+ forklift (None|[\d.]+)",
                        line) is not None


@pytest.mark.slow  # a daemon on a source paced in real time, previews on
def test_the_supervision_example_writes_an_annotated_video(tmp_path):
    weights = present_checkpoint(tmp_path / "present.pt")
    frames = _Frames(tmp_path)
    d = start_daemon("--checkpoint", str(weights), "--preview-every", "1", source=frames.source)
    out, since = tmp_path / "out.mp4", []

    def written(_lines: list[str]) -> bool:
        """10 frames after the example opened its video (so it had subscribed): the daemon answers each before the
        end of its source (it reads a file: no frame dropped), a preview and a result each."""
        if not since and out.exists():
            since.append(frames.written)
        return bool(since) and frames.written >= since[0] + 10

    try:
        from tracker.client import Client

        with Client(d.commands, timeout=60) as c:
            c.add_points(1, [[320, 240]], [1])
        code, _, err = _run_until(_with_endpoints(block(SUPERVISION), d.results, d.commands), tmp_path, frames,
                                  written)
    finally:
        frames.end()
        d.stop()
    assert code == 0, err[-3000:]
    import cv2

    cap = cv2.VideoCapture(str(out))
    try:
        assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= 5
    finally:
        cap.release()


@pytest.mark.slow  # a model at 512 px on a CPU
def test_the_library_example_tracks_with_a_checkpoint_file(tmp_path):
    """README's library example with what it assumes at hand: a checkpoint file of that name (Meta's format) and
    frames (moving shapes)."""
    present_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt")  # seeded weights: the same at any image size
    # frame 0, then 3 frames: the last is frame 3, and the example's box goes on frame 3 - 3 = 0, still kept
    setup = ("import numpy as np\nfrom pipelines.synthetic import moving_shapes\n"
             "frame0, *frames = moving_shapes(4, 480, 640)\n")
    check = "\nassert result.frame_index == 3 and obj.present and obj.mask.shape == (480, 640)\nprint('ok')\n"
    r = _run(setup + block(LIBRARY) + check, tmp_path, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_the_protocol_request_example_is_served():
    d = start_daemon(source="test:?width=640&height=480&fps=10")  # the example clicks at 320, 240
    try:
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(d.commands)
        s.send(block(REQUEST).encode())
        assert s.poll(60_000), "no reply"
        reply = json.loads(s.recv())
        s.close(0)
    finally:
        d.stop()
    assert reply["id"] == "42" and reply["ok"] is True and reply["result"]["object"]["id"] == 1, reply
