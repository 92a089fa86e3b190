"""The recorder's queue, in process: bounded whatever the writer's pace (a writer held as a saturated machine
holds it at SCHED_IDLE), what it drops counted and marked in the timeline, light result records, and a stop
that keeps its deadline. The real daemon path: tests/test_record*.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.frame import Frame
from tracker.core.results import make_result
from tracker.recording import writer as W
from tracker.recording.format import Manifest, ResultRecord, segment_paths, segments
from tracker.recording.segments import SegmentWriter


def _records(directory) -> list[dict]:
    return [json.loads(line) for n in segments(directory)
            for line in segment_paths(directory, n)[1].read_text().splitlines()]


def _result(i: int, n_objects: int = 2):
    low = torch.from_numpy(np.random.default_rng(i).normal(size=(1, 1, 16, 16)).astype(np.float32))
    return make_result(i, {k + 1: (low, torch.tensor([[1.0]])) for k in range(n_objects)}, 120, 160)


@pytest.fixture()
def held(monkeypatch):
    """The writer blocks in its first frame until the event is set."""
    release = threading.Event()
    original = SegmentWriter.frame

    def frame(self, *args):
        release.wait(60)
        return original(self, *args)

    monkeypatch.setattr(SegmentWriter, "frame", frame)
    yield release
    release.set()


def _recorder(tmp_path, queue_frames: int = 4) -> W.Recorder:
    manifest = Manifest("0", "sam2.1_hiera_t", 64, "0" * 64, {}, "fp32", 1, "test")
    return W.Recorder(W.RecordSettings(tmp_path, 60.0, 1 << 30, 1 << 30, queue_frames, idle_priority=False), manifest)


def test_the_queue_stays_bounded_and_what_it_drops_is_counted_and_marked(tmp_path, held, monkeypatch):
    monkeypatch.setattr(W, "COMMAND_BYTES", 64 << 10)
    r = _recorder(tmp_path)
    image = np.zeros((120, 160, 3), np.uint8)
    for i in range(400):  # a long stall of the writer: frames, results and commands keep coming
        r.frame(Frame(i, None, time.monotonic_ns(), image), i)
        r.result(_result(i))
        if i % 10 == 0:
            r.command(i, "add_mask", {"object": 1}, b"\1" * 8192, {"frame": i})
    with r._lock:
        queued = len(r._queue)
    # frames: queue_frames + one record per run of lost frames; results: 2 per queued frame; commands: by bytes
    assert queued <= 4 + 4 + 2 * 4 + (64 << 10) // 8192 + 8, queued
    assert r.lost >= 400 - 4 - 1 and r.results_lost >= 400 - 8 and r.commands_lost > 0
    held.set()
    r.close(timeout=30)
    records = _records(tmp_path)
    lost = [(x["frame"], x["count"]) for x in records if x["kind"] == "lost"]
    assert sum(c for _, c in lost) == r.lost
    dropped = [x for x in records if x["kind"] == "dropped"]
    assert sum(x["commands"] for x in dropped) == r.commands_lost and sum(x["results"] for x in dropped) == \
        r.results_lost
    assert [x["kind"] for x in records][0] == "session"


def test_a_stop_keeps_its_deadline_when_the_writer_is_stuck(tmp_path, held):
    r = _recorder(tmp_path)
    for i in range(4):
        r.frame(Frame(i, None, time.monotonic_ns(), np.zeros((120, 160, 3), np.uint8)), i)
    t0 = time.monotonic()
    r.stop()
    r.join(time.monotonic() + 1.0)
    assert time.monotonic() - t0 < 3.0  # the daemon's shutdown (and systemd's TimeoutStopSec) is not held up


def test_a_result_record_holds_no_tensor():
    """What waits for the writer is host bytes: a result's tensors (logits on the device) are not kept alive."""
    record = ResultRecord.of(_result(0, n_objects=3))
    values = [getattr(o, f.name) for o in record.objects for f in fields(o)]
    assert len(record.objects) == 3 and not any(isinstance(v, torch.Tensor) for v in values)
    assert all(isinstance(o.packed_mask, bytes) for o in record.objects)
    entry = record.timeline()["objects"]["2"]
    assert entry["mask"]["size"] == [120, 160] and len(entry["digest"]) == 32


def test_each_recorder_start_is_a_session_of_its_own(tmp_path):
    """Two daemon runs into one directory: two sessions, each with its manifest; the second's segments
    continue the numbering."""
    for _ in range(2):
        r = _recorder(tmp_path)
        r.frame(Frame(0, None, time.monotonic_ns(), np.zeros((120, 160, 3), np.uint8)), 0)
        r.close(timeout=30)
    sessions = [x for x in _records(tmp_path) if x["kind"] == "session"]
    assert [(x["session"], x["continues"]) for x in sessions] == [(0, False), (1, False)]
    assert segments(tmp_path) == [0, 1]
    assert Manifest.read(tmp_path, 0).session == 0 and Manifest.read(tmp_path, 1).session == 1
    assert Manifest.read(tmp_path).session == 1  # manifest.json: the newest


def test_the_size_limit_takes_the_states_and_manifests_of_sessions_no_segment_is_left_of(tmp_path):
    """Kept tracker states count toward --record-max-mb; once a session's last segment is deleted, its manifest
    and the state it was restored from go too; states the segments left name (an import) stay."""
    from tracker.recording.format import keep_state

    image = np.zeros((120, 160, 3), np.uint8)
    old = keep_state(tmp_path, b"state of session 0")
    manifest = Manifest("0", "sam2.1_hiera_t", 64, "0" * 64, {}, "fp32", 1, "test", restored_state=old)
    r = W.Recorder(W.RecordSettings(tmp_path, 60.0, 1 << 30, 1 << 30, 4, idle_priority=False), manifest)
    r.frame(Frame(0, None, time.monotonic_ns(), image), 0)
    r.close(timeout=30)
    new = keep_state(tmp_path, b"state of session 1")
    tiny = W.RecordSettings(tmp_path, 60.0, 1, 1, 4, idle_priority=False)  # a segment per frame, nothing fits
    r = W.Recorder(tiny, Manifest("0", "sam2.1_hiera_t", 64, "0" * 64, {}, "fp32", 1, "test", restored_state=new))
    for i in range(3):
        r.frame(Frame(i, None, time.monotonic_ns(), image), i)
        r.result(_result(i))  # the writer rotates (and enforces the limit) at each frame
    r.import_state(2, b"imported in session 1", {"frame": 2})
    r.close(timeout=30)
    kept = {p.name for p in (tmp_path / "states").iterdir()}
    imported = [x["args"]["state"] for x in _records(tmp_path) if x.get("op") == "import_state"]
    assert len(imported) == 1 and kept == {new.split("/")[1], imported[0].split("/")[1]}
    assert sorted(p.stem for p in (tmp_path / "sessions").glob("*.json")) == ["000001"]
    assert {x["session"] for x in _records(tmp_path) if x["kind"] == "session"} == {1}


def test_an_imported_state_survives_a_prune_at_the_instant_it_is_written(tmp_path, monkeypatch):
    """import_state's state lands on disk while the writer thread may be enforcing the size limit: a prune run
    at that instant (from another thread, as the writer's would) must leave it, or the timeline names a state
    the replay cannot find. (It was held from pruning only after the write.)"""
    import os

    from tracker.recording import format as F

    image = np.zeros((120, 160, 3), np.uint8)
    tiny = W.RecordSettings(tmp_path, 60.0, 1, 1, 4, idle_priority=False)  # every prune deletes what it may
    r = W.Recorder(tiny, Manifest("0", "sam2.1_hiera_t", 64, "0" * 64, {}, "fp32", 1, "test"))
    r.frame(Frame(0, None, time.monotonic_ns(), image), 0)
    assert r.flush(30)
    replace, prunes = os.replace, []

    def replace_then_prune(src, dst):
        replace(src, dst)
        if str(dst).endswith(".state"):
            prunes.append(threading.Thread(target=r._writer._prune_sessions))
            prunes[-1].start()
            prunes[-1].join(2.0)  # the prune runs now, or waits for what it must wait for

    monkeypatch.setattr(F.os, "replace", replace_then_prune)
    r.import_state(0, b"imported state", {"frame": 0})
    monkeypatch.undo()
    for t in prunes:
        t.join(30)
    r.close(timeout=30)
    named = [x["args"]["state"] for x in _records(tmp_path) if x.get("op") == "import_state"]
    assert len(prunes) == 1 and len(named) == 1 and not prunes[0].is_alive()
    assert (tmp_path / named[0]).read_bytes() == b"imported state"


def test_segments_and_sessions_go_on_past_999999(tmp_path):
    """Segment and session numbers have six digits until they need seven: 1000000 follows 999999, is counted,
    and a restart starts segment 1000001 and a new session (segment 1000000 once fell out of a six-digit glob:
    never counted, deleted or replayed, and a restart appended its session into that segment)."""
    image = np.zeros((120, 160, 3), np.uint8)
    r = _recorder(tmp_path)
    r.frame(Frame(0, None, time.monotonic_ns(), image), 0)
    r.close(timeout=30)
    for path in (*segment_paths(tmp_path, 0), tmp_path / "sessions" / "000000.json"):  # as if long recorded
        path.rename(path.with_name(path.name.replace("000000", "999999")))
    for _ in range(2):
        r = _recorder(tmp_path)
        r.frame(Frame(0, None, time.monotonic_ns(), image), 0)
        r.close(timeout=30)
    assert segments(tmp_path) == [999999, 1000000, 1000001]
    firsts = [json.loads(segment_paths(tmp_path, n)[1].read_text().splitlines()[0]) for n in segments(tmp_path)]
    assert [(x["kind"], x["session"]) for x in firsts] == [("session", 0), ("session", 1000000),
                                                           ("session", 1000001)]
    assert [x["kind"] for x in _records(tmp_path)].count("session") == 3  # no segment holds two sessions
    assert Manifest.read(tmp_path).session == 1000001


def _noise(rng, i: int) -> Frame:
    """A frame FFV1 cannot shrink: the disk fills in a few frames."""
    return Frame(i, None, time.monotonic_ns(), rng.integers(0, 256, (120, 160, 3), np.uint8))


def test_resuming_after_a_failed_write_says_how_much_was_not_recorded(tmp_path, monkeypatch, caplog):
    """Segment 0's video is /dev/full: writes fail, frames are skipped, and the recorder resumes in a new segment
    saying how many frames it did not record: as many as the resumed segment's timeline marks lost (the count
    was reset before it was logged, so it always said 0)."""
    import logging

    monkeypatch.setattr(W, "RETRY_S", 0.3)  # retried sooner than a daemon does: the test waits for it
    segment_paths(tmp_path, 0)[0].symlink_to("/dev/full")
    r = _recorder(tmp_path)
    rng = np.random.default_rng(0)
    deadline = time.monotonic() + 60
    with caplog.at_level(logging.WARNING, logger="tracker.recording.writer"):
        for i in range(3000):  # until it resumed, bounded in frames and time
            r.frame(_noise(rng, i), i)
            time.sleep(0.01)
            if "recording resumed" in caplog.text or time.monotonic() > deadline:
                break
        r.close(timeout=30)
    said = re.search(r"recording resumed .*; (\d+) frames", caplog.text)
    assert said and r.errors >= 1, caplog.text[-2000:]
    resumed = segments(tmp_path)[1]
    records = [json.loads(line) for line in segment_paths(tmp_path, resumed)[1].read_text().splitlines()]
    first_frame = next(k for k, x in enumerate(records) if x["kind"] == "frame")
    marked = sum(x["count"] for x in records[:first_frame] if x["kind"] == "lost")
    assert int(said.group(1)) == marked > 0


FULL_DISK_SCRIPT = """
import json, logging, sys, threading, time
from pathlib import Path
import numpy as np
from pipelines.frame import Frame
from tracker.recording import writer as W
from tracker.recording.format import Manifest, segment_paths, segments

logging.basicConfig(level=logging.INFO)
W.RETRY_S = 0.3  # retried sooner than a daemon does: the script waits for it
resumed = threading.Event()


class Resumed(logging.Handler):  # sets `resumed` when the recorder says it records again
    def emit(self, record):
        if "recording resumed" in record.getMessage():
            resumed.set()


logging.getLogger("tracker.recording.writer").addHandler(Resumed())
d = Path(sys.argv[1])
settings = W.RecordSettings(d, 60.0, 1 << 20, 3 << 19, 4, idle_priority=False)  # 1 MiB segments, 1.5 MiB in all
r = W.Recorder(settings, Manifest("0", "sam2.1_hiera_t", 64, "0" * 64, {}, "fp32", 1, "test"))
rng = np.random.default_rng(0)
deadline = time.monotonic() + 90
for i in range(4000):  # bounded: until the recorder resumed after the disk filled (a write failed)
    r.frame(Frame(i, None, time.monotonic_ns(), rng.integers(0, 256, (120, 160, 3), np.uint8)), i)
    time.sleep(0.01)
    if resumed.is_set() or time.monotonic() > deadline:
        break
r.close(timeout=30)
timelines = {n: segment_paths(d, n)[1].read_text().splitlines() for n in segments(d)}
print(json.dumps({"errors": r.errors, "timelines": timelines,
                  "empty": [p.name for p in d.glob("*.jsonl") if p.stat().st_size == 0]}))
"""


def test_a_full_disk_recorder_deletes_old_segments_and_resumes(tmp_path):
    """A real full disk (a 2 MiB tmpfs in a mount namespace of its own) under a recorder allowed 1.5 MiB in
    1 MiB segments: when a write fails, the retry first deletes the oldest segments down to the limit, then
    records again; no retry leaves an empty timeline. (The new segment's session record was written before
    the limit was enforced, so it never recovered, and each retry left an empty NNNNNN.jsonl.)"""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a tmpfs of its own")
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_SCRIPT)
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                          'mount -t tmpfs -o size=2m tmpfs "$1" || exit 77; exec "$2" "$3" "$1"', "sh",
                          str(mount), sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=root)
    if run.returncode == 77 or "unshare: " in run.stderr[:200]:
        pytest.skip(f"no tmpfs of its own here (user namespaces off?): {run.stderr.strip()[:200]}")
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["errors"] >= 1 and "No space left" in run.stderr, run.stderr[-3000:]
    assert "recording resumed" in run.stderr and "deleted segment" in run.stderr, run.stderr[-3000:]
    assert out["empty"] == []
    records = [json.loads(line) for n in sorted(out["timelines"], key=int) for line in out["timelines"][n]
               if line.startswith("{") and line.endswith("}")]
    marked = next(k for k, x in enumerate(records) if x["kind"] == "lost")
    assert any(x["kind"] == "frame" for x in records[marked:])  # frames recorded again after the gap
    assert min(int(n) for n in out["timelines"]) > 0  # the oldest were deleted
