"""`samtrack serve --record` through real daemons under what a service meets: rotation under the size limit, a
writer that cannot keep up (lost frames marked), a full disk (the tracking goes on, the recording resumes), two
daemon runs into one directory (a restart: a session each) and the default backend's engines; each replayed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from engines.base import PARTS
from tests.daemon_helpers import scrape_metrics, start_daemon
from tests.record_helpers import complete, frame_count, records, replay, wait_frames, weights_file
from tracker.build import auto_openvino_parts
from tracker.client import Client, Result, Subscriber
from tracker.recording.format import segment_paths, segments

pytestmark = pytest.mark.slow  # real daemons and replays


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return weights_file(tmp_path_factory)


def test_rotation_keeps_the_recording_under_its_limit(tmp_path):
    directory = tmp_path / "rotating"
    cfg = tmp_path / "record.toml"
    cfg.write_text(f"[record]\ndirectory = '{directory}'\nsegment_s = 0.5\nmax_mb = 0.03\n")
    d = start_daemon("--config", str(cfg), "--precision", "fp32")
    try:
        with Client(d.commands, timeout=60) as c:
            c.add_points(1, [[80, 60]], [1])
            # record until the limit has been passed once (a second or two of frames; on a loaded machine the
            # writer keeps fewer, the rest marked lost), bounded
            deadline = time.monotonic() + 120
            while not ((kept := segments(directory)) and kept[0] > 0) and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        assert d.stop() == 0
    kept = segments(directory)
    assert kept and kept[0] > 0, kept  # the oldest segments were deleted
    sizes = [sum(p.stat().st_size for p in segment_paths(directory, n) if p.is_file()) for n in kept]
    assert sum(sizes) <= 0.03 * 2**20 + max(sizes), sizes  # the limit, plus the segment being written
    r = replay(directory)
    assert r.returncode == 0 and "rotated out" in r.stderr, r.stderr[-3000:]


def test_frames_the_writer_cannot_keep_up_with_are_marked_lost(tmp_path):
    """A recorder whose queue holds one frame, fed 30 noise frames at once: the writer (FFV1-encoding noise,
    milliseconds a frame) keeps some; the others are marked lost (a run of them in one record), counted, and
    the video holds exactly the kept."""
    from pipelines.frame import Frame
    from pipelines.source import GstSource
    from tracker.recording.format import Manifest
    from tracker.recording.writer import Recorder, RecordSettings

    manifest = Manifest("0", "sam2.1_hiera_t", 64, "0" * 64, {}, "fp32", 1, "test")
    recorder = Recorder(RecordSettings(tmp_path, 60.0, 1 << 30, 1 << 30, queue_frames=1), manifest)
    rng = np.random.default_rng(0)
    for k in range(30):
        recorder.frame(Frame(k, None, time.monotonic_ns(), rng.integers(0, 256, (240, 320, 3), np.uint8)), k)
    recorder.close()
    timeline = records(tmp_path)
    kept = [r["frame"] for r in timeline if r["kind"] == "frame"]
    lost = [r["frame"] + i for r in timeline if r["kind"] == "lost" for i in range(r["count"])]
    assert recorder.lost == len(lost) > 0 and len(kept) > 0 and sorted(kept + lost) == list(range(30))
    with GstSource(str(segment_paths(tmp_path, 0)[0])) as src:
        assert sum(1 for _ in src) == len(kept)


def test_a_full_disk_stops_the_recording_not_the_tracking(tmp_path):
    """The first segment's video is /dev/full (every write: ENOSPC). The daemon keeps tracking and publishing,
    says what failed, counts the failed writes and lost frames, and records again in a new segment."""
    from pipelines.source import GstSource
    from tracker.recording.writer import RETRY_S

    directory, log = tmp_path / "full", tmp_path / "daemon.log"
    directory.mkdir()
    segment_paths(directory, 0)[0].symlink_to("/dev/full")
    d = start_daemon("--record", str(directory), "--precision", "fp32", log=log)
    try:
        with Client(d.commands, timeout=60) as c:
            port = c.stats()["metrics_port"]
            # the prompt goes in while the recorder is failing: after its first failed write (the video's bytes
            # reach /dev/full when GStreamer's buffer fills), within the RETRY_S before it tries again
            deadline = time.monotonic() + 60
            while (failed := _counter(scrape_metrics(port), "samtrack_record_errors_total")) < 1 \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            assert failed >= 1, "no failed write in 60 s"
            c.add_points(1, [[80, 60]], [1])
            with Subscriber(d.results, "test") as sub:
                got = [m for m in (sub.recv(10.0) for _ in range(5)) if isinstance(m, Result)]
            assert len(got) == 5  # results flow while the disk is full
            deadline = time.monotonic() + RETRY_S + 60
            while len(segments(directory)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            wait_frames(c, 5)
            metrics = scrape_metrics(port)
    finally:
        assert d.stop() == 0
    text = log.read_text()
    assert "No space left" in text and "tracking goes on" in text, text[-3000:]
    assert "recording resumed" in text, text[-3000:]
    assert _counter(metrics, "samtrack_record_errors_total") >= 1
    assert _counter(metrics, "samtrack_record_lost_frames_total") >= 1
    resumed = segments(directory)[1]
    kept = [r for r in records(directory) if r["kind"] == "frame"]
    assert len(segments(directory)) >= 2 and kept  # recording went on in a new segment
    with GstSource(str(segment_paths(directory, resumed)[0])) as src:
        assert sum(1 for _ in src) >= 1
    # what the failing writer skipped is in the timeline: every frame number recorded or marked lost, none missing
    timeline = records(directory)
    lost = [r["frame"] + i for r in timeline if r["kind"] == "lost" for i in range(r["count"])]
    frames = [r["frame"] for r in timeline if r["kind"] == "frame"]
    assert lost and sorted(lost + frames) == list(range(max(lost + frames) + 1))
    assert any(r["kind"] == "dropped" and r["commands"] == 1 for r in timeline)  # the prompt, sent while failing
    # replayed without a false divergence: nothing is comparable after the dropped prompt, and replay says so
    r = replay(directory, "--verify")
    assert "DIVERGED" not in r.stdout and "not compared: the recorder dropped a command" in r.stdout, r.stdout
    assert "rotated out" not in r.stderr, r.stderr[-2000:]


def _counter(metrics: dict[str, float], name: str) -> float:
    """A counter summed over its labels."""
    return sum(value for sample, value in metrics.items() if sample.startswith(name + "{"))


def test_a_recording_of_two_daemon_runs_replays_session_by_session(tmp_path):
    """Two `serve --record DIR` runs into one directory (a restart), a prompt in each: each run is a session
    replayed on a fresh tracker (frame numbers from 0 again), and --verify passes."""
    directory = tmp_path / "two"
    for obj in (1, 2):
        d = start_daemon("--record", str(directory), "--precision", "fp32", "--config", str(complete(tmp_path)))
        try:
            with Client(d.commands, timeout=60) as c:
                wait_frames(c, 3)
                c.add_points(obj, [[80, 60]], [1])
                wait_frames(c, 4)
        finally:
            assert d.stop() == 0
    timeline = records(directory)
    starts = [r["session"] for r in timeline if r["kind"] == "session" and not r["continues"]]
    assert starts == [0, 1] and sorted(p.name for p in (directory / "sessions").iterdir()) == ["000000.json",
                                                                                                "000001.json"]
    firsts = [r["frame"] for i, r in enumerate(timeline) if r["kind"] == "frame"
              and timeline[i - 1]["kind"] == "session"]
    assert firsts == [0, 0]  # the second run numbers its frames from 0 again
    r = replay(directory, "--verify")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    n = frame_count(directory)
    assert "2 session(s)" in r.stdout and f"verified: {n} frames identical to the recording" in r.stdout, r.stdout


def test_a_recording_made_with_the_default_backend_verifies(tmp_path, weights):
    """Backend auto at bf16 (the default on a CPU with native bf16; named here so every CPU takes that path):
    OpenVINO runs the image encoder alone. The manifest says which part ran where and the replay builds the
    same, so two daemon runs verify identical (the replay built every part with OpenVINO and diverged)."""
    pytest.importorskip("openvino")
    directory = tmp_path / "auto"
    for obj in (1, 2):
        d = start_daemon("--record", str(directory), "--precision", "bf16", "--checkpoint", str(weights),
                         "--config", str(complete(tmp_path)), backend=None)
        try:
            with Client(d.commands, timeout=60) as c:
                wait_frames(c, 3)
                c.add_points(obj, [[80, 60]], [1])
                wait_frames(c, 4)  # the prompt's object tracked on a few frames: any part built otherwise diverges
        finally:
            assert d.stop() == 0
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["backend"] == "openvino" and manifest["engines"] == {
        part: "openvino" if part in auto_openvino_parts() else "torch" for part in PARTS}  # auto's for this CPU
    r = replay(directory, "--verify", checkpoint=weights)
    n = frame_count(directory)
    assert r.returncode == 0 and f"verified: {n} frames identical to the recording" in r.stdout, \
        r.stdout + r.stderr[-3000:]
