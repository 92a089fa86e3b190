"""`samtrack serve --record` through a real daemon, and `samtrack replay [--verify]` of one recorded session:
identical results, the first divergence named when a recorded prompt is changed, IoU on another precision, device
or after a lost frame, a truncated last segment, recordings that do not fit, a recording as a source for `track`
and the benchmarks. Faults and restarts while recording: tests/test_record_faults.py; sessions answered by
motion: tests/test_record_motion.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.daemon_helpers import start_daemon
from tests.record_helpers import complete, frame_count, records, replay, wait_frames, weights_file
from tracker.client import Client, Result, Subscriber
from tracker.client.spawn import free_port
from tracker.recording.format import segment_paths

pytestmark = pytest.mark.slow  # a real daemon and a replay per test


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return weights_file(tmp_path_factory)


@pytest.fixture(scope="module")
def recording(tmp_path_factory, weights) -> Path:
    """A session with prompts on the latest and on a past frame, a mask, an object added late, one removed,
    a reset and a new object after it."""
    directory = tmp_path_factory.mktemp("rec") / "session"
    d = start_daemon("--record", str(directory), "--precision", "fp32", "--checkpoint", str(weights), "--config",
                     str(complete(directory.parent)))
    try:
        with Client(d.commands, timeout=60) as c:
            wait_frames(c, 3)
            c.add_points(1, [[80, 60]], [1])
            latest = wait_frames(c, 5)
            c.add_points(1, [[40, 30]], [0], frame=latest - 3, clear_old_points=False)
            mask = np.zeros((120, 160), bool)
            mask[70:110, 100:150] = True
            c.add_mask(4, mask)
            wait_frames(c, 3)
            c.add_box(2, [10, 10, 60, 50])
            wait_frames(c, 3)
            c.remove_object(2)
            wait_frames(c, 2)
            c.reset()
            c.add_points(3, [[100, 70]], [1])
            wait_frames(c, 4)
    finally:
        assert d.stop() == 0
    return directory


def test_a_recording_holds_frames_commands_results_and_a_manifest(recording):
    manifest = json.loads((recording / "manifest.json").read_text())
    assert manifest["model"] == "sam2.1_hiera_t" and manifest["precision"] == "fp32" and manifest["image_size"] == 64
    timeline = records(recording)
    ops = [r["op"] for r in timeline if r["kind"] == "command"]
    assert ops == ["add_points", "add_points", "add_mask", "add_box", "remove_object", "reset", "add_points"]
    frames = [r["frame"] for r in timeline if r["kind"] == "frame"]
    results = [r["frame"] for r in timeline if r["kind"] == "result"]
    assert frames == list(range(len(frames))) == results and len(frames) > 20
    assert segment_paths(recording, 0)[0].stat().st_size > 0


def test_replay_verifies_identical_and_publishes_like_a_daemon(recording, weights):
    """One replay, paced as recorded, both verifies and serves: every frame identical, a subscriber gets the
    results of the recorded stream, a client its ping, and it exits 0 at the recording's end."""
    results, commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "tracker.cli", "replay", str(recording), "--verify", "--realtime",
                             "--checkpoint", str(weights), "--results", results, "--commands", commands],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with Client(commands, timeout=60) as c, Subscriber(results) as sub:
            assert c.ping()["pong"] is True
            got = sub.recv(60.0)
            while got is not None and not isinstance(got, Result):
                got = sub.recv(60.0)
            assert isinstance(got, Result) and got.header["stream"] == "test"
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err[-3000:]
        assert f"verified: {frame_count(recording)} frames identical to the recording" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_changed_prompt_is_named_at_its_first_divergent_frame(recording, weights, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(recording, changed)
    timeline = segment_paths(changed, 0)[1]
    lines = timeline.read_text().splitlines()
    i = max(k for k, line in enumerate(lines) if '"op": "add_points"' in line)  # the last click, on object 3
    record = json.loads(lines[i])
    record["args"]["points"] = [[20.0, 100.0]]
    lines[i] = json.dumps(record)
    timeline.write_text("\n".join(lines) + "\n")
    r = replay(changed, "--verify", checkpoint=weights)
    assert r.returncode == 1, r.stdout + r.stderr[-3000:]
    assert f"DIVERGED: frame {record['after_frame'] + 1}, object 3:" in r.stdout


def test_another_precision_reports_iou_against_the_recording(recording, weights):
    """Every recorded result compared (masks not empty: objects forced present), mean IoU within the bf16 path's
    contract against fp32 (docs/engines.md: >= 0.98)."""
    results = [x for x in records(recording) if x["kind"] == "result"]
    assert sum(o["area"] > 0 for x in results for o in x["objects"].values()) > len(results) // 2
    r = replay(recording, "--verify", "--precision", "bf16", checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    m = re.search(r"compared (\d+) frames on bf16 against the recording's fp32: mask IoU mean ([\d.]+)", r.stdout)
    assert m, r.stdout
    assert int(m.group(1)) == len(results) and float(m.group(2)) >= 0.98, r.stdout


def test_a_truncated_last_segment_replays_up_to_its_last_complete_frame(recording, weights, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(recording, cut)
    video = segment_paths(cut, 0)[0]
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with open(segment_paths(cut, 0)[1], "a") as f:
        f.write('{"kind": "frame", "fr')  # and a timeline line cut short
    r = replay(cut, checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    n = frame_count(recording)
    replayed = int(r.stdout.split("replayed ")[1].split()[0])
    assert 0 < replayed < n and "truncated" in r.stderr and "cut short" in r.stderr


def test_recordings_that_do_not_fit_are_refused(recording, weights, tmp_path):
    r = replay(tmp_path)
    assert r.returncode == 2 and "manifest.json is missing" in r.stderr
    other = tmp_path / "other"
    shutil.copytree(recording, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["weights_sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    r = replay(other, checkpoint=weights)
    assert r.returncode == 2 and "recorded with other weights" in r.stderr


def test_a_recording_is_a_source_for_samtrack_track(recording, tmp_path):
    out = tmp_path / "m.jsonl"
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "track", str(recording), "--box", "40,30,120,90",
                        "--masks", str(out), "--image-size", "64", "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    n = frame_count(recording)
    lines = out.read_text().splitlines()
    assert len(lines) == n and json.loads(lines[0])["objects"][0]["id"] == 1


def test_a_recording_is_a_source_for_the_benchmarks(recording, tmp_path):
    """bench step decodes the recording's frames; bench e2e serves it (a daemon on a recording: its frames at
    their pace, then the end of the stream)."""
    n = frame_count(recording)
    for scenario, extra in (("step", ["--quick", "--objects", "1", "--batch", "off"]),
                            ("e2e", ["--configs", "fast", "--seconds", "30", "--warmup", "2"])):
        out = tmp_path / f"{scenario}.json"
        r = subprocess.run([sys.executable, "-m", "tracker.cli", "bench", scenario, *extra, "--source", str(recording),
                            "--image-size", "64", "--width", "160", "--height", "120", "--threads", "1",
                            "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        data = json.loads(out.read_text())
        assert data["settings"]["source"] == str(recording)
        if scenario == "step":
            assert data["results"]["1"]["step"]["n"] == 8
        else:
            run = data["runs"][0]
            assert run["input_fps"] is None and run["daemon_exit_code"] == 0
            assert 0 < run["frames"] <= n - 2  # the recording's frames after warm-up, then its end


def _drop_frame(recording: Path, into: Path, k: int) -> Path:
    """A copy of a one-segment recording as a recorder that lost frame k writes it: not in the video, a lost
    record in its place in the timeline."""
    from pipelines.sinks import LosslessFileSink
    from pipelines.source import GstSource

    shutil.copytree(recording, into)
    video, timeline = segment_paths(into, 0)
    with GstSource(str(video)) as src:
        images = [f.image for f in src]
    sink = LosslessFileSink(video, images[0].shape[1], images[0].shape[0], 30.0)
    for i, image in enumerate(images):
        if i != k:
            sink.push(image)
    sink.close()
    lines = [json.dumps({"kind": "lost", "frame": k, "count": 1}) if json.loads(line) == {**json.loads(line),
             "kind": "frame", "frame": k} else line for line in timeline.read_text().splitlines()]
    timeline.write_text("\n".join(lines) + "\n")
    return into


def test_lost_frames_are_skipped_and_what_follows_is_compared_by_iou(recording, weights, tmp_path):
    """A frame the recorder lost: its result is not compared, frame numbers after it still line up (they used
    to be looked up one off), and the frames after it, which the replay tracks without the lost one, are
    compared by IoU against the contract (here mean 0.998, min 0.992)."""
    timeline = records(recording)
    named = {x["reply"]["frame"] for x in timeline if x["kind"] == "command" and "frame" in x.get("reply", {})}
    # the first frame after the first prompt that no prompt names (a prompt on a lost frame ends the comparison,
    # and which frames the prompts land on depends on the daemon's timing)
    k = next(f for f in range(min(named) + 1, min(named) + 100) if f not in named)
    lost = _drop_frame(recording, tmp_path / "lost", k)
    r = replay(lost, "--verify", checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    n = frame_count(recording)
    assert f"verified: {k} frames identical to the recording" in r.stdout, r.stdout
    compared = int(re.search(r"compared (\d+) frames on fp32", r.stdout).group(1))
    assert compared == n - k - 1 and "1 recorded results not compared" in r.stdout, r.stdout


def test_a_recording_from_another_device_is_compared_by_iou(recording, weights, tmp_path):
    """The manifest names the device, backend and stream batching: a session recorded on a GPU replayed on the
    CPU cannot be bit-identical, so it is compared by IoU, never reported as diverged."""
    other = tmp_path / "gpu"
    shutil.copytree(recording, other)
    for path in (other / "manifest.json", *(other / "sessions").iterdir()):
        manifest = json.loads(path.read_text())
        path.write_text(json.dumps({**manifest, "device": "cuda:0"}))
    r = replay(other, "--verify", checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    n = frame_count(recording)
    assert "verified: 0 frames identical" in r.stdout and f"compared {n} frames on fp32" in r.stdout, r.stdout
