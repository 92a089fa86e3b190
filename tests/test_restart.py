"""A restart loses nothing: real daemons with a state directory, killed with SIGKILL in a step and started again,
a stream's objects exported from one daemon and imported into another, a recorded session that starts from a
restored state replayed exactly. Loopback only."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.daemon_helpers import scrape_metrics, start_daemon
from tracker.client import Client, RemoteError, Result, Subscriber
from tracker.client.spawn import free_port

pytestmark = pytest.mark.slow  # real daemons, each started twice

SIZE = 256  # a step long enough (a few hundred ms) that the kill lands inside one
# For daemons that mostly wait while the test runs other processes beside them (the state commands, another
# daemon's start): a few frames a second leaves those the CPU.
IDLE = "test:?width=160&height=120&fps=5"


def _results(d, n: int, timeout: float = 60.0) -> list[Result]:
    out, deadline = [], time.monotonic() + timeout
    with Subscriber(d.results, "test") as sub:
        while len(out) < n and time.monotonic() < deadline:
            r = sub.recv(5.0)
            if isinstance(r, Result):
                out.append(r)
    assert len(out) == n, f"{len(out)} results within {timeout} s"
    return out


def _prompt_two(c: Client, d) -> int:
    """Object 1 by a box, object 2 by a click, then a correction of 1 on a past frame; the latest frame."""
    c.add_box(1, [20, 20, 90, 80])
    c.add_points(2, [[120, 70]], [1])
    seen = _results(d, 3)[-1].frame
    c.add_points(1, [[40, 40], [5, 5]], [1, 0], frame=seen - 1)
    return seen


def test_a_sigkill_in_a_step_loses_no_object(tmp_path):
    state = tmp_path / "state"
    args = ("--state", str(state), "--precision", "fp32")
    d = start_daemon(*args, image_size=SIZE)
    with Client(d.commands, timeout=60) as c:
        _prompt_two(c, d)
        before = c.ping()
    last = _results(d, 1)[-1].frame  # a step just ended: the next one is in flight now
    d.proc.kill()
    assert d.proc.wait(timeout=30) == -9
    t0 = time.monotonic()
    again = start_daemon(*args, image_size=SIZE, endpoints=(d.results, d.commands), wait_for_frame=False)
    try:
        first = _results(again, 2)
        restart_s = time.monotonic() - t0
        with Client(again.commands, timeout=60) as c:
            ping = c.ping()
            assert [o["id"] for o in c.list_objects()["objects"]] == [1, 2]
            assert ping["state"]["restored"]["objects"] == [1, 2] and ping["state"]["path"].startswith(str(state))
            with pytest.raises(RemoteError) as e:  # a frame number from before the restart: never another frame
                c.add_points(1, [[50, 50]], [1], frame=last)
            assert e.value.code == "frame_out_of_window"
        assert all({o["id"] for o in r.header["objects"]} == {1, 2} for r in first)
        assert first[0].frame > last and first[0].frame > before["frame"]  # numbering goes on, never repeats
        print(f"SIGKILL to the first result with the restored objects: {restart_s:.1f} s (RestartSec aside)")
    finally:
        assert again.stop() == 0


def test_a_restored_stream_lists_its_objects_before_its_first_frame(tmp_path):
    """Restarted on a camera that has sent nothing yet: list_objects names the restored objects, on no frame
    (it asked the empty window for the latest frame's results and answered frame_out_of_window)."""
    state, pattern = tmp_path / "state", "other=test:?width=160&height=120&fps=15"
    d = start_daemon("--source", "cam=test:?width=160&height=120&fps=15", "--source", pattern, "--state", str(state),
                     source=None)
    with Client(d.commands, timeout=60, stream="cam") as c:
        for _ in range(100):  # bounded: until cam has a frame to prompt on
            if c.ping()["frame"] is not None:
                break
            time.sleep(0.1)
        c.add_points(1, [[40, 40]], [1])
        c.add_box(2, [60, 30, 120, 90])
    assert d.stop() == 0
    again = start_daemon("--source", f"cam=rtsp://127.0.0.1:{free_port()}/nobody", "--source", pattern,
                         "--state", str(state), source=None)
    try:
        with Client(again.commands, timeout=60, stream="cam") as c:
            listed = c.list_objects()
            assert c.ping()["state"]["restored"]["objects"] == [1, 2]
        assert [o["id"] for o in listed["objects"]] == [1, 2] and listed["frame"] is None
    finally:
        assert again.stop() == 0


def test_a_stream_moves_from_one_daemon_to_another(tmp_path):
    """`samtrack state export` from daemon A, `samtrack state import` into daemon B (other ports, the same
    weights): B tracks A's objects."""
    a = start_daemon("--no-state", source=IDLE)  # (small images: the move is checked, not a step's length)
    b = start_daemon("--state", str(tmp_path / "b"), source=IDLE)
    try:
        with Client(a.commands, timeout=60) as c:
            _prompt_two(c, a)
        moved = tmp_path / "cam 1.state"  # a path with a space, as a user types it
        for action, d in (("export", a), ("import", b)):
            r = subprocess.run([sys.executable, "-m", "tracker.cli", "state", action, str(moved), "--commands",
                                d.commands], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[-3000:]
        assert "imported 2 object(s) [1, 2]" in r.stdout
        shown = subprocess.run([sys.executable, "-m", "tracker.cli", "state", "show", str(moved)],
                               capture_output=True, text=True, timeout=120)
        assert json.loads(shown.stdout)["model"] == "sam2.1_hiera_t"
        results = _results(b, 3)
        assert all({o["id"] for o in r.header["objects"]} == {1, 2} for r in results[1:])
        with Client(b.commands, timeout=60) as c:
            stats = c.stats()
            assert stats["state"]["writes"] >= 1  # B keeps what it imported, and its metrics say so
            metrics = scrape_metrics(stats["metrics_port"])
        assert metrics['samtrack_state_writes_total{stream="test"}'] >= 1
        assert metrics.get('samtrack_state_write_errors_total{stream="test"}', 0) == 0
    finally:
        assert a.stop() == 0 and b.stop() == 0


def test_another_models_state_is_refused_over_the_socket(tmp_path):
    a = start_daemon("--no-state", source=IDLE)  # 64 px, the helper's
    b = start_daemon("--no-state", source=IDLE, image_size=128)
    try:
        with Client(a.commands, timeout=60) as c:
            c.add_box(1, [20, 20, 90, 80])
            _, data = c.export_state()
        with Client(b.commands, timeout=60) as c, pytest.raises(RemoteError) as e:
            c.import_state(data)
        assert e.value.code == "bad_state" and "image_size 64 (this daemon: 128)" in e.value.message
    finally:
        assert a.stop() == 0 and b.stop() == 0


def test_a_recorded_session_that_starts_from_a_restored_state_replays_exactly(tmp_path):
    record, state = tmp_path / "rec", tmp_path / "state"
    cfg = tmp_path / "complete.toml"
    cfg.write_text("[record]\nidle_priority = false\n")  # every frame recorded, on a busy machine too
    args = ("--record", str(record), "--state", str(state), "--precision", "fp32", "--config", str(cfg))
    d = start_daemon(*args)
    with Client(d.commands, timeout=60) as c:
        _prompt_two(c, d)
        _results(d, 3)
    d.proc.kill()
    d.proc.wait(timeout=30)
    again = start_daemon(*args, endpoints=(d.results, d.commands))
    try:
        with Client(again.commands, timeout=60) as c:
            c.add_points(3, [[100, 60]], [1])
            _results(again, 4)
    finally:
        assert again.stop() == 0
    manifest = json.loads((record / "sessions" / "000001.json").read_text())
    assert manifest["restored_state"] and (record / manifest["restored_state"]).is_file()
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "replay", str(record), "--verify", "--results",
                        f"tcp://127.0.0.1:{free_port()}", "--commands", f"tcp://127.0.0.1:{free_port()}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "2 session(s)" in r.stdout and "verified:" in r.stdout and "compared on" not in r.stdout, r.stdout


def test_an_import_into_a_restarted_recorded_daemon_replays_exactly(tmp_path):
    """A recorded daemon restarted with a frame reservation and no object (its numbering no longer starts at 0),
    then a state imported into it: `replay --verify` reproduces the session bit for bit (the import restored at
    the frame number the daemon used, the session's first frame from its manifest)."""
    record, state = tmp_path / "rec", tmp_path / "state"
    cfg = tmp_path / "complete.toml"
    cfg.write_text("[record]\nidle_priority = false\n")
    args = ("--state", str(state), "--precision", "fp32", "--config", str(cfg))
    first = start_daemon(*args)  # reserves frame numbers, and makes the state to import
    with Client(first.commands, timeout=60) as c:
        c.add_box(1, [20, 20, 90, 80])
        _, data = c.export_state()
    assert first.stop() == 0
    (state / "test.state").unlink()  # its objects not kept: the restart has the reservation alone
    d = start_daemon(*args, "--record", str(record), endpoints=(first.results, first.commands))
    try:
        with Client(d.commands, timeout=60) as c:
            assert c.ping()["frame"] >= 1000  # numbering past the reservation
            assert c.import_state(data)["objects"] == [1]
            _results(d, 4)
    finally:
        assert d.stop() == 0
    manifest = json.loads((record / "sessions" / "000000.json").read_text())
    assert manifest["first_frame"] >= 1000 and manifest["restored_state"] is None
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "replay", str(record), "--verify", "--results",
                        f"tcp://127.0.0.1:{free_port()}", "--commands", f"tcp://127.0.0.1:{free_port()}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "verified:" in r.stdout and "compared on" not in r.stdout and "rotated" not in r.stderr, r.stdout
