"""The daemon end to end: a real subprocess on the test source, real ZeroMQ sockets."""

from __future__ import annotations

import json
import re
import signal
import time

import numpy as np
import psutil
import pytest
import zmq

from tests.daemon_helpers import start_daemon
from tracker.client import Client, RemoteError, Result, Subscriber


@pytest.fixture(scope="module")
def daemon():
    """One daemon for the module's tests, each resetting its stream; bits masks (the largest messages: a subscriber
    that never reads fills its buffers soonest). Its stop is SIGTERM, exit code 0 after all of them, a stuck
    subscriber's included."""
    d = start_daemon("--preview-every", "2", "--max-objects", "8", "--mask-encoding", "bits")
    yield d
    assert d.stop() == 0


def _next_results(sub: Subscriber, n: int, timeout: float = 30.0) -> list[Result]:
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        r = sub.recv(5.0)
        if isinstance(r, Result):
            out.append(r)
    assert len(out) == n, f"only {len(out)} results within {timeout} s"
    return out


def test_objects_come_and_go_and_past_frames_can_be_prompted(daemon):
    with Client(daemon.commands, timeout=30) as c, Subscriber(daemon.results, "test") as sub:
        c.reset()
        seen = _next_results(sub, 1)[0]
        r = c.add_points(1, [[80, 60]], [1])
        assert r["object"]["id"] == 1 and r["frame"] >= seen.frame
        res = _next_results(sub, 5)
        # Each frame's first answer once (a frame the model took may come after later frames answered by motion).
        firsts = [x.frame for x in res if x.revision == 0]
        assert len(set(firsts)) == len(firsts) >= 3
        # The prompted frame is answered again, with the object (docs/protocol.md: revisions).
        revised = [x for x in res if x.frame == r["frame"] and x.revision >= 1]
        assert len(revised) == 1 and 1 in revised[0].masks
        # Masks from the prompted frame on hold the object (a frame answered by motion from an older key frame,
        # computed while the prompt was served, does not).
        later = [x for x in res if x.frame > r["frame"] and x.key_frame >= r["frame"]]
        assert later and all(1 in x.masks and x.masks[1].shape == (120, 160) for x in later)

        c.add_box(2, [10, 10, 60, 50])
        res = _next_results(sub, 3)
        assert all({1, 2} <= {o["id"] for o in x.header["objects"]} for x in res[1:])

        c.remove_object(2)
        res = _next_results(sub, 3)
        assert all({o["id"] for o in x.header["objects"]} == {1} for x in res[1:])

        past = res[0].frame  # a frame we saw a moment ago, still in the window
        r = c.add_points(1, [[40, 30]], [0], frame=past)
        assert r["frame"] == past and r["retracked"] >= 1
        assert r["object"]["id"] == 1
        after = _next_results(sub, 4)  # the prompted frame and the newest re-tracked one answered again, then on
        revised = {x.frame for x in after if x.revision >= 1}
        assert past in revised and all(1 in x.masks for x in after if x.revision >= 1)
        new = [x for x in after if x.revision == 0]
        assert new and new[-1].frame > past and 1 in new[-1].masks

        objs = c.list_objects()
        assert [o["id"] for o in objs["objects"]] == [1]
        with pytest.raises(RemoteError) as e:
            c.add_points(1, [[10, 10]], [1], frame=after[-1].frame + 1000)  # not seen yet
        assert e.value.code == "frame_out_of_window"
        with pytest.raises(RemoteError) as e:
            c.remove_object(99)
        assert e.value.code == "unknown_object"
        stats = c.stats()
        assert stats["frames"] > 0 and stats["prompts"] >= 3 and stats["errors"]["frame_out_of_window"] >= 1
        assert {"encoder", "track", "step", "publish", "publish_queue"} <= set(stats["timings_ms"])


def test_a_client_cannot_grow_a_stream_without_bound(daemon):
    """New ids beyond max_objects are refused with too_many_objects; corrections still apply; a removal
    makes room."""
    with Client(daemon.commands, timeout=30) as c:
        c.reset()
        for k in range(1, 9):
            c.add_points(k, [[80, 60]], [1])
        with pytest.raises(RemoteError) as e:
            c.add_box(9, [10, 10, 60, 50])
        assert e.value.code == "too_many_objects" and "max_objects" in e.value.message
        assert c.add_points(3, [[70, 50]], [1])["object"]["id"] == 3
        c.remove_object(1)
        assert c.add_box(9, [10, 10, 60, 50])["object"]["id"] == 9
        assert len(c.list_objects()["objects"]) == 8 and c.stats()["errors"]["too_many_objects"] == 1
        c.reset()


def test_mask_prompt_round_trip(daemon):
    with Client(daemon.commands, timeout=30) as c:
        c.reset()
        m = np.zeros((120, 160), bool)
        m[30:70, 40:100] = True
        for enc in ("rle", "bits", "png"):
            r = c.add_mask(5, m, encoding=enc)
            assert r["object"]["id"] == 5 and r["object"]["present"]
            # on its own frame a mask prompt is the output, through the model's low-res grid (image_size/4
            # cells: 10 x 7.5 px here): the box within a cell, the area within 10 %
            assert np.abs(np.subtract(r["object"]["bbox"], [40, 30, 99, 69])).max() <= 7, r
            assert abs(r["object"]["area"] - m.sum()) <= 0.1 * m.sum(), r
        with pytest.raises(RemoteError) as e:
            c.add_mask(5, np.ones((10, 10), bool))
        assert e.value.code == "bad_prompt" and "frame's shape" in e.value.message
        c.reset()


def test_previews_carry_the_frame_to_click_on(daemon):
    with Subscriber(daemon.results, "test", previews=True) as sub:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = sub.recv(5.0)
            if isinstance(msg, tuple):
                header, jpeg = msg
                assert header["type"] == "preview" and header["width"] == 160 and jpeg[:2] == b"\xff\xd8"
                return
    pytest.fail("no preview received")


def test_client_timeout_resets_its_socket():
    ctx = zmq.Context.instance()
    dead = "tcp://127.0.0.1:1"  # nothing listens there
    with Client(dead, timeout=0.3, context=ctx) as c:
        first = c._sock
        with pytest.raises(TimeoutError, match="no reply to ping"):
            c.ping()
        assert c._sock is not first and not c._sock.closed


@pytest.mark.slow
def test_slow_subscriber_does_not_stall_and_sigterm_is_clean(daemon):
    """A subscriber that never reads does not slow the model's frames; the daemon's SIGTERM after it (the module's
    daemon stops with exit code 0) is clean."""
    with Client(daemon.commands, timeout=30) as c:
        c.reset()
        c.add_points(1, [[80, 60]], [1])
        f0, t0 = c.stats()["frames"], time.monotonic()
        time.sleep(3)
        base_rate = (c.stats()["frames"] - f0) / (time.monotonic() - t0)
        ctx = zmq.Context()
        stuck = ctx.socket(zmq.SUB)  # subscribes, never reads
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.setsockopt(zmq.RCVBUF, 4096)
        stuck.setsockopt(zmq.SUBSCRIBE, b"")
        stuck.connect(daemon.results)
        f1, t1 = c.stats()["frames"], time.monotonic()
        time.sleep(3)
        stuck_rate = (c.stats()["frames"] - f1) / (time.monotonic() - t1)
        stuck.close(0)
        ctx.term()
        c.reset()
    assert base_rate > 0 and stuck_rate > 0.5 * base_rate, (base_rate, stuck_rate)


def test_a_burst_of_past_frame_prompts_is_spread_over_frames(daemon):
    """Each prompt on a past frame re-tracks up to a window; the daemon serves at most
    RETRACK_FRAMES_PER_TURN re-tracked frames between two frames, so tracking goes on during a burst."""
    from tracker.daemon.loop import RETRACK_FRAMES_PER_TURN

    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(daemon.commands)
    try:
        back = RETRACK_FRAMES_PER_TURN // 2  # two such prompts fill a turn's budget
        with Client(daemon.commands, timeout=30) as c:
            c.reset()
            deadline = time.monotonic() + 60
            while (c.ping()["frame"] or 0) < 2 * back and time.monotonic() < deadline:
                time.sleep(0.2)
            latest = c.ping()["frame"]
        n = 6
        for k in range(n):
            req = {"v": 1, "id": k, "op": "add_points",
                   "args": {"object": 10 + k, "points": [[80, 60]], "labels": [1], "frame": latest - back}}
            dealer.send_multipart([json.dumps(req).encode()])
        replies, deadline = [], time.monotonic() + 120
        while len(replies) < n and time.monotonic() < deadline:
            if dealer.poll(1000):
                replies.append(json.loads(dealer.recv_multipart()[-1]))
        assert len(replies) == n and all(r["ok"] for r in replies), replies
        # the latest frame when each prompt was served: it moved on between turns
        served_at = [r["result"]["frame"] + r["result"]["retracked"] for r in replies]
        assert all(r["result"]["retracked"] >= back for r in replies)
        assert len(set(served_at)) >= n // 2, served_at
        assert all(r["result"]["elapsed_ms"] > 0 for r in replies)
    finally:
        dealer.close(0)
        ctx.term()
        with Client(daemon.commands, timeout=30) as c:
            c.reset()


@pytest.mark.slow
def test_sigterm_interrupts_a_step_in_flight(tmp_path):
    """At 1024 px (one thread) a step takes seconds; SIGTERM must not wait for it: the daemon exits sooner than
    the rest of the step in flight would take (the step time from `stats`), and its log says it interrupted one.
    Exit times are measured by `samtrack bench shutdown` (docs/benchmarks.md)."""
    log = tmp_path / "daemon.log"
    d = start_daemon("--feature-window", "2", image_size=1024, wait_s=300, log=log)
    try:
        # sent together, served between the same two steps; the next step (the object's first) starts as the
        # replies leave: a frame is always waiting
        _, stats = _served_together(d.commands, [("add_box", {"object": 1, "box": [20, 20, 100, 90]}),
                                                 ("stats", {})], timeout=300)
        started = time.monotonic()
        step_s = stats["timings_ms"]["step"]["p50"] / 1000  # steps without the object: an underestimate
        time.sleep(0.5)
        t = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        code = d.proc.wait(timeout=60)
        took = time.monotonic() - t
    finally:
        d.stop()
    text = log.read_text()
    assert code == 0, text[-2000:]
    left = step_s - (t - started)  # at least what a daemon that finishes its step first would still take
    assert took < left, f"exit took {took:.1f} s after SIGTERM, the rest of the step {left:.1f} s (p50 {step_s:.1f} s)"
    assert "stopped in the middle of a tracking step" in text, text[-2000:]


def _served_together(commands: str, requests: list[tuple[str, dict]], timeout: float) -> list[dict]:
    """Each request's result, the requests sent at once on one socket (a Client waits for each reply in turn)."""
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(commands)
    try:
        for k, (op, args) in enumerate(requests):
            dealer.send_multipart([json.dumps({"v": 1, "id": k, "op": op, "args": args}).encode()])
        replies, deadline = {}, time.monotonic() + timeout
        while len(replies) < len(requests) and time.monotonic() < deadline:
            if dealer.poll(1000):
                reply = json.loads(dealer.recv_multipart()[-1])
                replies[reply["id"]] = reply
    finally:
        dealer.close(0)
        ctx.term()
    assert len(replies) == len(requests) and all(r["ok"] for r in replies.values()), replies
    return [replies[k]["result"] for k in range(len(requests))]


def test_sigint_exits_zero():
    d = start_daemon()
    p = psutil.Process(d.proc.pid)
    assert p.is_running()
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(timeout=10) == 0


def test_watch_prints_results_and_writes_an_overlay_video(daemon, tmp_path):
    import subprocess
    import sys

    from pipelines.source import GstSource

    out = tmp_path / "overlay.mkv"
    with Client(daemon.commands, timeout=30) as c:
        c.reset()
        c.add_points(1, [[80, 60]], [1])
        r = subprocess.run([sys.executable, "-m", "tracker.cli", "watch", "--results", daemon.results,
                            "--frames", "12", "--video", str(out)], capture_output=True, text=True, timeout=120)
        c.reset()
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("frame")]
    assert len(lines) == 12 and "latency" in lines[0] and "#1 " in lines[-1]
    assert "glass-to-mask latency p50" in r.stdout
    with GstSource(str(out)) as src:
        frames = list(src)
    assert len(frames) >= 3 and frames[0].image.shape == (120, 160, 3)
    assert f"wrote {len(frames)} frames to {out}" in r.stdout  # it once never said it wrote the file


def test_objects_are_removed_and_a_stream_reset_from_the_command_line(daemon):
    """`samtrack remove --object N` and `samtrack reset` (the Python client and the viewer could; no command
    could); `samtrack stats` with its numbers rounded."""
    import subprocess
    import sys

    def samtrack(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tracker.cli", *args, "--commands", daemon.commands],
                              capture_output=True, text=True, timeout=120)

    with Client(daemon.commands, timeout=30) as c:
        c.reset()
        c.add_points(1, [[80, 60]], [1])
        c.add_box(2, [10, 10, 60, 50])
        removed = samtrack("remove", "--object", "1")
        after_remove = [o["id"] for o in c.list_objects()["objects"]]
        unknown = samtrack("remove", "--object", "7")
        reset = samtrack("reset")
        after_reset = c.list_objects()["objects"]
        stats = samtrack("stats")
    assert stats.returncode == 0 and '"fps"' in stats.stdout, stats.stderr[-2000:]
    assert re.findall(r"\d\.\d{4,}", stats.stdout) == []  # rounded: it printed 17 digits
    assert removed.returncode == 0 and after_remove == [2], removed.stderr[-2000:]
    assert unknown.returncode == 2 and "unknown_object" in unknown.stderr and "Traceback" not in unknown.stderr
    assert reset.returncode == 0 and after_reset == [], reset.stderr[-2000:]


def test_the_signal_handler_takes_no_lock_the_loop_may_hold():
    """A signal lands between any two bytecodes of the main thread, also inside a lock's critical section (an
    Event's wait, a queue's get): a handler that takes such a lock deadlocks the daemon until SIGKILL. With
    every lock the daemon owns held, its SIGTERM handler must still return at once."""
    import signal as sig
    import threading

    from pipelines import open_source
    from tests.conftest import make_model
    from tracker import Tracker
    from tracker.client.spawn import free_port
    from tracker.daemon.loop import Daemon, DaemonSettings
    from tracker.daemon.stream import Stream

    settings = DaemonSettings(f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", "rle", 4, None,
                              0, None, 10.0, 5.0)
    tracker = Tracker.from_sam2(make_model(image_size=64), backend="torch")
    daemon = Daemon([Stream("s", open_source("test:"), tracker)], settings)
    before = {s: sig.getsignal(s) for s in (sig.SIGINT, sig.SIGTERM)}
    held = []
    try:
        daemon.install_signal_handlers()
        handler = sig.getsignal(sig.SIGTERM)
        for lock in _locks_of(daemon):
            assert lock.acquire(timeout=5)
            held.append(lock)
        assert held  # the publisher's queue, at least
        done = threading.Event()
        threading.Thread(target=lambda: (handler(sig.SIGTERM, None), done.set()), daemon=True).start()
        assert done.wait(5), "the SIGTERM handler blocks on a lock the main thread may hold"
    finally:
        for lock in held:
            lock.release()
        for s, h in before.items():
            sig.signal(s, h)
        daemon.close()


def _locks_of(obj, depth: int = 3, seen: set | None = None) -> list:
    """Every lock reachable from obj's attributes (Events and Conditions through their inner lock)."""
    import threading

    seen = set() if seen is None else seen
    if id(obj) in seen or depth < 0 or isinstance(obj, threading.Thread):  # a thread's own lock is held while it runs
        return []
    seen.add(id(obj))
    lock_types = (type(threading.Lock()), type(threading.RLock()))
    if isinstance(obj, lock_types):
        return [obj]
    if isinstance(obj, threading.Event):
        return _locks_of(obj._cond, depth, seen)
    if isinstance(obj, threading.Condition):
        return _locks_of(obj._lock, depth, seen)
    children = list(vars(obj).values()) if hasattr(obj, "__dict__") and not isinstance(obj, type) else []
    if isinstance(obj, (list, tuple, set)):
        children = list(obj)
    elif isinstance(obj, dict):
        children = list(obj.values())
    return [lock for c in children for lock in _locks_of(c, depth - 1, seen)]
