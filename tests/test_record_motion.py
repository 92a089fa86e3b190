"""`samtrack serve --record` of sessions answered by motion (the default mode: a model slower than the camera
answers key frames, motion the others), replayed answer for answer: identical, a changed motion answer named, a
restarted daemon with an import verified bit for bit."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.daemon_helpers import start_daemon
from tests.record_helpers import complete, records, replay, wait_frames, weights_file
from tracker.client import Client, Result, Subscriber
from tracker.recording.format import segment_paths

pytestmark = pytest.mark.slow  # real daemons and replays


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return weights_file(tmp_path_factory)


@pytest.fixture(scope="module")
def moved_recording(tmp_path_factory, weights) -> Path:
    """A session whose frames the model does not take are answered by motion (a model slower than the camera):
    clicks on the latest frame, on a frame answered by motion and on a past frame, a removal and a reset."""
    directory = tmp_path_factory.mktemp("moved") / "session"
    d = start_daemon("--record", str(directory), "--precision", "fp32", "--checkpoint", str(weights), "--config",
                     str(complete(directory.parent)), image_size=256, motion=True)
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
            wait_frames(c, 2)
            c.remove_object(2)
            c.add_points(1, [[40, 30]], [0], frame=c.ping()["window"][1] - 2, clear_old_points=False)
            wait_frames(c, 2)
            c.reset()
            c.add_points(3, [[100, 70]], [1])
            wait_frames(c, 3)
    finally:
        assert d.stop() == 0
    return directory


def test_a_session_answered_by_motion_replays_identically(moved_recording, weights):
    """The replay's model takes the recorded key frames, under their numbers, and every frame is carried again from
    the model results the daemon's motion thread took where it took them: every answer identical."""
    timeline = records(moved_recording)
    assert json.loads((moved_recording / "manifest.json").read_text())["between_key_frames"] == "motion"
    moved = [x for x in timeline if x["kind"] == "result" and x["source"] == "motion"]
    model = [x for x in timeline if x["kind"] == "result" and x["source"] == "model"]
    assert len(moved) > len(model) > 3 and all(x["key_frame"] < x["frame"] for x in moved if x["objects"])
    frames = [x["frame"] for x in timeline if x["kind"] == "frame"]
    assert frames == list(range(frames[0], frames[0] + len(frames)))  # every frame recorded
    r = replay(moved_recording, "--verify", checkpoint=weights)
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
    r = replay(changed, "--verify", checkpoint=weights)
    assert r.returncode == 1 and f"DIVERGED: frame {record['frame']}, object {first['id']}:" in r.stdout, r.stdout


def test_a_restarted_session_answered_by_motion_with_an_import_replays_identically(tmp_path, weights):
    """The default mode through what a service meets: a recorded daemon whose frames between key frames are answered
    by motion, restarted from its state directory (a second session, numbering past its reservation), a state
    imported into it: both sessions verify bit for bit (seeds numbered per session, the import's forgetting)."""
    record, state = tmp_path / "rec", tmp_path / "state"
    args = ("--record", str(record), "--state", str(state), "--precision", "fp32", "--checkpoint", str(weights),
            "--config", str(complete(tmp_path)))
    d = start_daemon(*args, image_size=256, motion=True)
    try:
        with Client(d.commands, timeout=60) as c:
            c.add_points(1, [[80, 60]], [1])
            wait_frames(c, 3)
            _, exported = c.export_state()
    finally:
        assert d.stop() == 0
    d = start_daemon(*args, image_size=256, motion=True, endpoints=(d.results, d.commands))
    try:
        with Client(d.commands, timeout=60) as c:
            assert [o["id"] for o in c.list_objects()["objects"]] == [1]  # restored
            c.add_box(2, [10, 10, 60, 50])
            wait_frames(c, 2)
            assert c.import_state(exported)["objects"] == [1]
            wait_frames(c, 1)  # a frame after the import to prompt on
            c.add_points(1, [[70, 50]], [1])
            wait_frames(c, 3)
            assert c.stats()["frame_errors"] == 0
    finally:
        assert d.stop() == 0
    assert len(list((record / "sessions").glob("*.json"))) == 2
    r = replay(record, "--verify", checkpoint=weights)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "by motion)" in r.stdout and "not compared" not in r.stdout, r.stdout
