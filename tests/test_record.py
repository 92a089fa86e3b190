"""`samtrack serve --record` through a real daemon, and `samtrack replay [--verify]` of what it wrote:
identical results, the first divergence named when a recorded prompt is changed, rotation under its limit,
a truncated last segment, recordings that do not fit."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engines.base import PARTS
from tests.daemon_helpers import present_checkpoint, scrape_metrics, start_daemon
from tracker.build import auto_openvino_parts
from tracker.client import Client, Result, Subscriber
from tracker.client.spawn import free_port
from tracker.recording.format import segment_paths, segments

pytestmark = pytest.mark.slow  # real daemons and replays: a minute together


def _wait_frames(c: Client, n: int, timeout: float = 60.0) -> int:
    start = c.ping()["frame"] or 0
    deadline = time.monotonic() + timeout
    while (c.ping()["frame"] or 0) < start + n and time.monotonic() < deadline:
        time.sleep(0.1)
    return c.ping()["frame"]


def _replay(directory: Path, *args: str, checkpoint: Path | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess:
    endpoints = ["--results", f"tcp://127.0.0.1:{free_port()}", "--commands", f"tcp://127.0.0.1:{free_port()}"]
    weights = ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
    return subprocess.run([sys.executable, "-m", "tracker.cli", "replay", str(directory), *endpoints, *weights,
                           *args], capture_output=True, text=True, timeout=timeout)


def _records(directory: Path) -> list[dict]:
    return [json.loads(line) for n in segments(directory) for line in segment_paths(directory, n)[1].read_text()
            .splitlines()]


def _complete(directory: Path) -> Path:
    """A config whose recorder competes for the CPU (idle_priority off): on a busy machine a SCHED_IDLE writer
    would lose frames, which the tests of lost frames cover; these need every frame."""
    cfg = directory / "complete.toml"
    cfg.write_text("[record]\nidle_priority = false\n")
    return cfg


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The recording's weights: objects forced present, so its masks are not empty (replays pass them too)."""
    return present_checkpoint(tmp_path_factory.mktemp("weights") / "present.pt")


@pytest.fixture(scope="module")
def recording(tmp_path_factory, weights) -> Path:
    """A session with prompts on the latest and on a past frame, a mask, an object added late, one removed,
    a reset and a new object after it."""
    directory = tmp_path_factory.mktemp("rec") / "session"
    d = start_daemon("--record", str(directory), "--precision", "fp32", "--checkpoint", str(weights), "--config",
                     str(_complete(directory.parent)))
    try:
        with Client(d.commands, timeout=60) as c:
            _wait_frames(c, 3)
            c.add_points(1, [[80, 60]], [1])
            latest = _wait_frames(c, 5)
            c.add_points(1, [[40, 30]], [0], frame=latest - 3, clear_old_points=False)
            mask = np.zeros((120, 160), bool)
            mask[70:110, 100:150] = True
            c.add_mask(4, mask)
            _wait_frames(c, 3)
            c.add_box(2, [10, 10, 60, 50])
            _wait_frames(c, 3)
            c.remove_object(2)
            _wait_frames(c, 2)
            c.reset()
            c.add_points(3, [[100, 70]], [1])
            _wait_frames(c, 4)
    finally:
        assert d.stop() == 0
    return directory


def test_a_recording_holds_frames_commands_results_and_a_manifest(recording):
    manifest = json.loads((recording / "manifest.json").read_text())
    assert manifest["model"] == "sam2.1_hiera_t" and manifest["precision"] == "fp32" and manifest["image_size"] == 64
    records = _records(recording)
    ops = [r["op"] for r in records if r["kind"] == "command"]
    assert ops == ["add_points", "add_points", "add_mask", "add_box", "remove_object", "reset", "add_points"]
    frames = [r["frame"] for r in records if r["kind"] == "frame"]
    results = [r["frame"] for r in records if r["kind"] == "result"]
    assert frames == list(range(len(frames))) == results and len(frames) > 20
    assert segment_paths(recording, 0)[0].stat().st_size > 0


def test_replay_verifies_identical_and_publishes_like_a_daemon(recording, weights):
    r = _replay(recording, "--verify", checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    n = sum(1 for x in _records(recording) if x["kind"] == "frame")
    assert f"verified: {n} frames identical to the recording" in r.stdout

    results, commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "tracker.cli", "replay", str(recording), "--realtime",
                             "--checkpoint", str(weights), "--results", results, "--commands", commands],
                            stdout=subprocess.DEVNULL)
    try:
        with Client(commands, timeout=60) as c, Subscriber(results) as sub:
            assert c.ping()["pong"] is True
            got = sub.recv(60.0)
            while got is not None and not isinstance(got, Result):
                got = sub.recv(60.0)
            assert isinstance(got, Result) and got.header["stream"] == "test"
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
    r = _replay(changed, "--verify", checkpoint=weights)
    assert r.returncode == 1, r.stdout + r.stderr[-3000:]
    assert f"DIVERGED: frame {record['after_frame'] + 1}, object 3:" in r.stdout


def test_another_precision_reports_iou_against_the_recording(recording, weights):
    """Every recorded result compared (masks not empty: objects forced present), mean IoU within the bf16 path's
    contract against fp32 (docs/engines.md: >= 0.98)."""
    results = [x for x in _records(recording) if x["kind"] == "result"]
    assert sum(o["area"] > 0 for x in results for o in x["objects"].values()) > len(results) // 2
    r = _replay(recording, "--verify", "--precision", "bf16", checkpoint=weights)
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
    r = _replay(cut, checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    n = sum(1 for x in _records(recording) if x["kind"] == "frame")
    replayed = int(r.stdout.split("replayed ")[1].split()[0])
    assert 0 < replayed < n and "truncated" in r.stderr and "cut short" in r.stderr


def test_recordings_that_do_not_fit_are_refused(recording, weights, tmp_path):
    r = _replay(tmp_path)
    assert r.returncode == 2 and "manifest.json is missing" in r.stderr
    other = tmp_path / "other"
    shutil.copytree(recording, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["weights_sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    r = _replay(other, checkpoint=weights)
    assert r.returncode == 2 and "recorded with other weights" in r.stderr


def test_rotation_keeps_the_recording_under_its_limit(tmp_path):
    directory = tmp_path / "rotating"
    cfg = tmp_path / "record.toml"
    cfg.write_text(f"[record]\ndirectory = '{directory}'\nsegment_s = 0.5\nmax_mb = 0.03\n")
    d = start_daemon("--config", str(cfg), "--precision", "fp32")
    try:
        with Client(d.commands, timeout=60) as c:
            c.add_points(1, [[80, 60]], [1])
            _wait_frames(c, 40)
            # on a loaded machine the writer keeps fewer frames (the rest are marked lost): record until the
            # limit has been passed once, bounded
            deadline = time.monotonic() + 60
            while not ((kept := segments(directory)) and kept[0] > 0) and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        assert d.stop() == 0
    kept = segments(directory)
    assert kept and kept[0] > 0, kept  # the oldest segments were deleted
    sizes = [sum(p.stat().st_size for p in segment_paths(directory, n) if p.is_file()) for n in kept]
    assert sum(sizes) <= 0.03 * 2**20 + max(sizes), sizes  # the limit, plus the segment being written
    r = _replay(directory)
    assert r.returncode == 0 and "rotated out" in r.stderr, r.stderr[-3000:]


def test_a_recording_is_a_source_for_samtrack_track(recording, tmp_path):
    out = tmp_path / "m.jsonl"
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "track", str(recording), "--box", "40,30,120,90",
                        "--masks", str(out), "--image-size", "64", "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    n = sum(1 for x in _records(recording) if x["kind"] == "frame")
    lines = out.read_text().splitlines()
    assert len(lines) == n and json.loads(lines[0])["objects"][0]["id"] == 1


def test_a_recording_is_a_source_for_the_benchmarks(recording, tmp_path):
    """bench step decodes the recording's frames; bench e2e serves it (a daemon on a recording: its frames at
    their pace, then the end of the stream)."""
    n = sum(1 for x in _records(recording) if x["kind"] == "frame")
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
    records = _records(tmp_path)
    kept = [r["frame"] for r in records if r["kind"] == "frame"]
    lost = [r["frame"] + i for r in records if r["kind"] == "lost" for i in range(r["count"])]
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
            _wait_frames(c, 5)
            metrics = scrape_metrics(port)
    finally:
        assert d.stop() == 0
    text = log.read_text()
    assert "No space left" in text and "tracking goes on" in text, text[-3000:]
    assert "recording resumed" in text, text[-3000:]
    assert _counter(metrics, "samtrack_record_errors_total") >= 1
    assert _counter(metrics, "samtrack_record_lost_frames_total") >= 1
    resumed = segments(directory)[1]
    kept = [r for r in _records(directory) if r["kind"] == "frame"]
    assert len(segments(directory)) >= 2 and kept  # recording went on in a new segment
    with GstSource(str(segment_paths(directory, resumed)[0])) as src:
        assert sum(1 for _ in src) >= 1
    # what the failing writer skipped is in the timeline: every frame number recorded or marked lost, none missing
    records = _records(directory)
    lost = [r["frame"] + i for r in records if r["kind"] == "lost" for i in range(r["count"])]
    frames = [r["frame"] for r in records if r["kind"] == "frame"]
    assert lost and sorted(lost + frames) == list(range(max(lost + frames) + 1))
    assert any(r["kind"] == "dropped" and r["commands"] == 1 for r in records)  # the prompt, sent while failing
    # replayed without a false divergence: nothing is comparable after the dropped prompt, and replay says so
    r = _replay(directory, "--verify")
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
        d = start_daemon("--record", str(directory), "--precision", "fp32", "--config", str(_complete(tmp_path)))
        try:
            with Client(d.commands, timeout=60) as c:
                _wait_frames(c, 3)
                c.add_points(obj, [[80, 60]], [1])
                _wait_frames(c, 4)
        finally:
            assert d.stop() == 0
    records = _records(directory)
    starts = [r["session"] for r in records if r["kind"] == "session" and not r["continues"]]
    assert starts == [0, 1] and sorted(p.name for p in (directory / "sessions").iterdir()) == ["000000.json",
                                                                                                "000001.json"]
    firsts = [r["frame"] for i, r in enumerate(records) if r["kind"] == "frame"
              and records[i - 1]["kind"] == "session"]
    assert firsts == [0, 0]  # the second run numbers its frames from 0 again
    r = _replay(directory, "--verify")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    n = sum(1 for x in records if x["kind"] == "frame")
    assert "2 session(s)" in r.stdout and f"verified: {n} frames identical to the recording" in r.stdout, r.stdout


def test_a_recording_made_with_the_default_backend_verifies(tmp_path, weights):
    """Backend auto at bf16 (the default on a CPU with native bf16; named here so every CPU takes that path):
    OpenVINO runs the image encoder alone. The manifest says which part ran where and the replay builds the
    same, so two daemon runs verify identical (the replay built every part with OpenVINO and diverged)."""
    pytest.importorskip("openvino")
    directory = tmp_path / "auto"
    for obj in (1, 2):
        d = start_daemon("--record", str(directory), "--precision", "bf16", "--checkpoint", str(weights),
                         "--config", str(_complete(tmp_path)), backend=None)
        try:
            with Client(d.commands, timeout=60) as c:
                _wait_frames(c, 3)
                c.add_points(obj, [[80, 60]], [1])
                _wait_frames(c, 12)
        finally:
            assert d.stop() == 0
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["backend"] == "openvino" and manifest["engines"] == {
        part: "openvino" if part in auto_openvino_parts() else "torch" for part in PARTS}  # auto's for this CPU
    r = _replay(directory, "--verify", checkpoint=weights)
    n = sum(1 for x in _records(directory) if x["kind"] == "frame")
    assert r.returncode == 0 and f"verified: {n} frames identical to the recording" in r.stdout, \
        r.stdout + r.stderr[-3000:]


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
    records = _records(recording)
    named = {x["reply"]["frame"] for x in records if x["kind"] == "command" and "frame" in x.get("reply", {})}
    # the first frame after the first prompt that no prompt names (a prompt on a lost frame ends the comparison,
    # and which frames the prompts land on depends on the daemon's timing)
    k = next(f for f in range(min(named) + 1, min(named) + 100) if f not in named)
    lost = _drop_frame(recording, tmp_path / "lost", k)
    r = _replay(lost, "--verify", checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    n = sum(1 for x in records if x["kind"] == "frame")
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
    r = _replay(other, "--verify", checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    n = sum(1 for x in _records(recording) if x["kind"] == "frame")
    assert "verified: 0 frames identical" in r.stdout and f"compared {n} frames on fp32" in r.stdout, r.stdout


@pytest.fixture(scope="module")
def moved_recording(tmp_path_factory, weights) -> Path:
    """A session whose frames the model does not take are answered by motion (a model slower than the camera):
    clicks on the latest frame, on a frame answered by motion and on a past frame, a removal and a reset."""
    directory = tmp_path_factory.mktemp("moved") / "session"
    d = start_daemon("--record", str(directory), "--precision", "fp32", "--checkpoint", str(weights), "--config",
                     str(_complete(directory.parent)), image_size=256, motion=True)
    try:
        with Client(d.commands, timeout=60) as c, Subscriber(d.results, "test") as sub:
            c.add_points(1, [[80, 60]], [1])
            moved, deadline = None, time.monotonic() + 60
            while moved is None and time.monotonic() < deadline:
                r = sub.recv(5.0)
                if isinstance(r, Result) and r.source == "motion" and r.key_frame is not None:
                    moved = r.frame
            assert moved is not None, "no frame answered by motion"
            assert c.add_box(2, [10, 10, 60, 50], frame=moved)["frame"] == moved
            _wait_frames(c, 2)
            c.remove_object(2)
            c.add_points(1, [[40, 30]], [0], frame=c.ping()["window"][1] - 2, clear_old_points=False)
            _wait_frames(c, 2)
            c.reset()
            c.add_points(3, [[100, 70]], [1])
            _wait_frames(c, 3)
    finally:
        assert d.stop() == 0
    return directory


def test_a_session_answered_by_motion_replays_identically(moved_recording, weights):
    """The replay's model takes the recorded key frames, under their numbers, and every frame is carried again from
    the model results the daemon's motion thread took where it took them: every answer identical."""
    records = _records(moved_recording)
    assert json.loads((moved_recording / "manifest.json").read_text())["between_key_frames"] == "motion"
    moved = [x for x in records if x["kind"] == "result" and x["source"] == "motion"]
    model = [x for x in records if x["kind"] == "result" and x["source"] == "model"]
    assert len(moved) > len(model) > 3 and all(x["key_frame"] < x["frame"] for x in moved if x["objects"])
    frames = [x["frame"] for x in records if x["kind"] == "frame"]
    assert frames == list(range(frames[0], frames[0] + len(frames)))  # every frame recorded
    r = _replay(moved_recording, "--verify", checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert f"verified: {len(moved) + len(model)} answers identical to the recording ({len(model)} by the model, " \
           f"{len(moved)} by motion)" in r.stdout


def test_a_changed_motion_answer_is_named(moved_recording, weights, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(moved_recording, changed)
    timeline = segment_paths(changed, 0)[1]
    lines = timeline.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if '"source": "motion"' in line and '"digest"' in line)
    record = json.loads(lines[i])
    first = next(iter(record["objects"].values()))
    first["digest"] = "0" * 32
    lines[i] = json.dumps(record)
    timeline.write_text("\n".join(lines) + "\n")
    r = _replay(changed, "--verify", checkpoint=weights)
    assert r.returncode == 1 and f"DIVERGED: frame {record['frame']}, object {first['id']}:" in r.stdout, r.stdout


def test_a_restarted_session_answered_by_motion_with_an_import_replays_identically(tmp_path, weights):
    """The default mode through what a service meets: a recorded daemon whose frames between key frames are answered
    by motion, restarted from its state directory (a second session, numbering past its reservation), a state
    imported into it: both sessions verify bit for bit (seeds numbered per session, the import's forgetting)."""
    record, state = tmp_path / "rec", tmp_path / "state"
    args = ("--record", str(record), "--state", str(state), "--precision", "fp32", "--checkpoint", str(weights),
            "--config", str(_complete(tmp_path)))
    d = start_daemon(*args, image_size=256, motion=True)
    try:
        with Client(d.commands, timeout=60) as c:
            c.add_points(1, [[80, 60]], [1])
            _wait_frames(c, 3)
            _, exported = c.export_state()
    finally:
        assert d.stop() == 0
    d = start_daemon(*args, image_size=256, motion=True, endpoints=(d.results, d.commands))
    try:
        with Client(d.commands, timeout=60) as c:
            assert [o["id"] for o in c.list_objects()["objects"]] == [1]  # restored
            c.add_box(2, [10, 10, 60, 50])
            _wait_frames(c, 2)
            assert c.import_state(exported)["objects"] == [1]
            _wait_frames(c, 1)  # a frame after the import to prompt on
            c.add_points(1, [[70, 50]], [1])
            _wait_frames(c, 3)
            assert c.stats()["frame_errors"] == 0
    finally:
        assert d.stop() == 0
    assert len(list((record / "sessions").glob("*.json"))) == 2
    r = _replay(record, "--verify", checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "by motion)" in r.stdout and "not compared" not in r.stdout, r.stdout
