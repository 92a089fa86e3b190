"""Every code block of README.md and docs/ runs as written: the Python ones in a fresh interpreter against a real
daemon (its endpoints substituted for the defaults), the JSON request of docs/protocol.md sent to one. A block
that is added without a way to run it here fails the inventory test."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
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


def _video(directory: Path, frames: int) -> Path:
    """A 640x480 ball video (the examples click at 320, 240), encoded by gst-launch-1.0."""
    path = directory / "ball.mkv"
    desc = (f"videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=640,height=480,framerate=10/1 ! "
            f"videoconvert ! x264enc speed-preset=ultrafast ! matroskamux ! filesink location={path}")
    subprocess.run(["gst-launch-1.0", "-q", *shlex.split(desc)], check=True, timeout=60)
    return path


def _run(code: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow  # a daemon on a file paced in real time
def test_the_client_example_prints_the_clicked_objects_mask(tmp_path):
    """README's client example: a click, then every result until the source ends (it must not end before, nor
    crash on the results published before the click was served)."""
    weights = present_checkpoint(tmp_path / "present.pt")
    video = _video(tmp_path, 60)
    d = start_daemon("--checkpoint", str(weights), source=f"{video}#realtime=1")
    try:
        r = _run(_with_endpoints(block(CLIENT), d.results, d.commands), tmp_path)
    finally:
        d.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert len(lines) >= 10 and all(re.fullmatch(r"\d+ model \d+ [\d.]+", ln) for ln in lines), r.stdout[-2000:]


@pytest.mark.slow  # a daemon with a detector on a file paced in real time
def test_the_concept_example_prints_labelled_objects_and_their_events(tmp_path):
    """README's "Track every X" example against a daemon with OmDet-Turbo at random weights (it finds boxes all over
    a ball video at the example's threshold): labelled objects and lifecycle events, until the file ends."""
    weights = present_checkpoint(tmp_path / "present.pt")
    video = _video(tmp_path, 300)
    # a window of 128 frames (12.8 s at 10 fps): longer than a detector call here, so its answers apply
    d = start_daemon("--checkpoint", str(weights), "--detector", "omdet-turbo", "--feature-window", "128",
                     source=f"{video}#realtime=1")
    try:
        r = _run(_with_endpoints(block(CONCEPTS), d.results, d.commands), tmp_path)
    finally:
        d.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    objects = [ln for ln in lines if re.fullmatch(r"\d+ \d+ (tentative|confirmed|lost) [\d.]+ \d+", ln)]
    events = [ln for ln in lines if re.fullmatch(r"\d+ (appeared|confirmed|lost|refound|retracted|removed) \d+ "
                                                r"forklift (None|[\d.]+)", ln)]
    assert objects and events and len(objects) + len(events) == len(lines), r.stdout[-2000:]
    assert any(" appeared " in ln for ln in events)


@pytest.mark.slow  # a daemon on a file paced in real time, previews on
def test_the_supervision_example_writes_an_annotated_video(tmp_path):
    weights = present_checkpoint(tmp_path / "present.pt")
    video = _video(tmp_path, 40)
    d = start_daemon("--checkpoint", str(weights), "--preview-every", "1", source=f"{video}#realtime=1")
    try:
        from tracker.client import Client

        with Client(d.commands, timeout=60) as c:
            c.add_points(1, [[320, 240]], [1])
        r = _run(_with_endpoints(block(SUPERVISION), d.results, d.commands), tmp_path)
    finally:
        d.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    try:
        assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= 5
    finally:
        cap.release()


@pytest.mark.slow  # a model at 512 px on a CPU
def test_the_library_example_tracks_with_a_checkpoint_file(tmp_path):
    """README's library example with what it assumes at hand: a checkpoint file of that name (Meta's format) and
    frames (a moving ball)."""
    import torch

    from tracker.models import seeded_model

    torch.save({"model": seeded_model("sam2.1_hiera_t", image_size=512, present=True).state_dict()},
               tmp_path / "sam2.1_hiera_tiny.pt")
    setup = ("import numpy as np\nfrom pipelines.synthetic import moving_shapes\n"
             "frame0, *frames = moving_shapes(5, 480, 640)\n")
    check = "\nassert result.frame_index == 4 and obj.present and obj.mask.shape == (480, 640)\nprint('ok')\n"
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
