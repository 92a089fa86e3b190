"""Several streams in one daemon (one model): each stream's results equal a one-stream run on the same
file (fp32, bit for bit) whatever is prompted on the others; commands name their stream with documented
errors; a camera that dies reconnects while the other streams keep their rate; one that cannot start is
reported while the others run. Real daemons, real sockets, loopback only."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.daemon_helpers import scrape_metrics, start_daemon
from tests.notify import NotifySocket
from tests.rtsp_server import RtspTestServer
from tracker.client import Client, RemoteError, Result, StreamEnd, Subscriber
from tracker.client.spawn import free_port
from tracker.protocol import decode_mask

pytestmark = pytest.mark.slow  # real daemons on files and an RTSP server

FRAMES = 30  # 2 s at 15 fps (longer on a loaded CPU: no frame of a file is dropped): time to prompt while they play


def _video(path: Path, pattern: str) -> Path:
    """A moving test pattern as H.264 in MP4, written by gst-launch-1.0."""
    desc = (f"videotestsrc pattern={pattern} num-buffers={FRAMES} ! video/x-raw,width=160,height=120,"
            f"framerate=15/1 ! videoconvert ! x264enc speed-preset=ultrafast ! mp4mux ! filesink location={path}")
    subprocess.run(["gst-launch-1.0", "-q", *shlex.split(desc)], check=True, timeout=60)
    return path


def _wait_frame(c: Client, stream: str, n: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while (c.request("ping")["per_stream"][stream]["frame"] or 0) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return c.request("ping")["per_stream"][stream]["frame"]


def _track(video: Path, frame: int, prompt: list[str], out: Path) -> subprocess.Popen:
    """`samtrack track` (one stream, offline) with the daemon's prompt on the frame the daemon applied it, started
    (one thread each: the two files' runs go side by side on two cores)."""
    return subprocess.Popen([sys.executable, "-m", "tracker.cli", "track", str(video), "--frame", str(frame),
                             "--object", "1", *prompt, "--masks", str(out), "--image-size", "64", "--threads", "1",
                             "--precision", "fp32", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _tracked(run: subprocess.Popen, out: Path) -> dict[int, dict]:
    """A `_track` run's masks by frame, once it has ended."""
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    return {rec["frame"]: rec for rec in map(json.loads, out.read_text().splitlines())}


def test_three_streams_equal_one_stream_runs_and_commands_name_their_stream(tmp_path):
    a, b = _video(tmp_path / "a.mp4", "ball"), _video(tmp_path / "b.mp4", "pinwheel")
    d = start_daemon("--source", f"a=file://{a}#realtime=1", "--source", f"b=file://{b}#realtime=1",
                     "--source", "c=test:?width=160&height=120&fps=15",
                     "--source", f"cam=rtsp://127.0.0.1:{free_port()}/nobody", "--precision", "fp32", source=None)
    results: dict[str, list[Result]] = {"a": [], "b": [], "c": []}
    try:
        with Client(d.commands, timeout=60) as c, Subscriber(d.results) as sub:
            ping = c.request("ping")
            assert ping["streams"] == ["a", "b", "c", "cam"]  # (a missing file is refused at start: test_cli_paths)
            for op, args, code in (("add_points", {"object": 1, "points": [[8, 8]], "labels": [1]}, "stream_required"),
                                   ("list_objects", {"stream": "zz"}, "unknown_stream")):
                with pytest.raises(RemoteError) as e:
                    c.request(op, args)
                assert e.value.code == code and "a, b, c, cam" in e.value.message
            _wait_frame(c, "a", 3)
            with Client(d.commands, 60, stream="a") as ca, Client(d.commands, 60, stream="b") as cb, \
                    Client(d.commands, 60, stream="c") as cc:
                fa = ca.add_points(1, [[80, 60]], [1])["frame"]
                fb = cb.add_box(1, [20, 20, 100, 90])["frame"]
                cc.add_points(1, [[40, 40]], [1])
            # a live camera that never starts is retried in the background (its start too: the other streams
            # never wait for it), and says why it is down (asked once the files' prompts are in, while they play)
            deadline = time.monotonic() + 30
            while not (cam := c.request("ping")["per_stream"]["cam"]["source"])["error"] \
                    and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not cam["connected"] and cam["error"], cam
            ended: set[str] = set()
            deadline = time.monotonic() + 120
            while ended != {"a", "b"} and time.monotonic() < deadline:
                msg = sub.recv(10.0)
                if isinstance(msg, StreamEnd):
                    ended.add(msg.header["stream"])
                elif isinstance(msg, Result):
                    results[msg.header["stream"]].append(msg)
            assert ended == {"a", "b"} and sub.gaps == 0
            stats = c.request("stats")
            assert stats["per_stream"]["c"]["objects"] == 1 and stats["total"]["objects"] == 3
            assert stats["total"]["errors"] == {"stream_required": 1, "unknown_stream": 1}
            assert stats["total"]["frames"] == sum(s["frames"] for s in stats["per_stream"].values())
    finally:
        assert d.stop() == 0
    prompts = {"a": (a, fa, ["--point", "80,60"]), "b": (b, fb, ["--box", "20,20,100,90"])}
    runs = {name: _track(video, frame, prompt, tmp_path / f"{name}.jsonl")
            for name, (video, frame, prompt) in prompts.items()}
    try:
        wants = {name: _tracked(run, tmp_path / f"{name}.jsonl") for name, run in runs.items()}
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
                run.communicate()
    for name, frame in (("a", fa), ("b", fb)):
        want = wants[name]
        got = [r for r in results[name] if r.frame > frame]
        assert len(got) >= FRAMES - frame - 3 and got[-1].frame == FRAMES - 1  # every frame after the prompt
        for r in got:
            assert r.header["source_index"] == r.frame  # no frame of a file is skipped
            (o,), w = r.header["objects"], want[r.frame]["objects"][0]
            m = decode_mask(w["mask"]["counts"].encode(), "rle", 120, 160)
            assert np.array_equal(r.masks[1], m) and o["score"] == w["score"] and o["bbox"] == w["bbox"], \
                f"stream {name}, frame {r.frame}"
    assert results["c"] and all(r.header["stream"] == "c" for r in results["c"])


def test_a_dead_camera_reconnects_while_the_other_streams_keep_their_rate(tmp_path):
    """... and the service side follows: systemd's watchdog keeps being fed while one stream flows, STATUS
    names every stream, the dead camera's metrics say so."""
    notify = NotifySocket(tmp_path / "notify.sock")
    server = RtspTestServer(free_port()).start()
    cfg = tmp_path / "streams.toml"
    cfg.write_text(f'[service]\nwatchdog_stall_s = 1.0\nstatus_every_s = 0.5\n'
                   f'[[streams]]\nname = "cam"\nsource = "{server.url}#latency=0"\nstall_timeout_s = 2.0\n'
                   f'reconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n'
                   f'[[streams]]\nname = "test"\nsource = "test:?width=160&height=120&fps=10"\n')
    d = start_daemon("--config", str(cfg), source=None,
                     env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"})
    try:
        with Client(d.commands, timeout=60) as c:
            def frames(stream: str) -> int:
                return c.request("ping")["per_stream"][stream]["frame"] or 0

            def rate(seconds: float = 3.0) -> float:
                n0, t0 = frames("test"), time.monotonic()
                time.sleep(seconds)
                return (frames("test") - n0) / (time.monotonic() - t0)

            _wait_frame(c, "cam", 3)
            before = rate()
            server.kill()
            time.sleep(0.5)
            during = rate(4.0)  # spans the stall timeout and several failed reconnection attempts
            down = c.request("ping", {"stream": "cam"})["source"]
            assert not down["connected"]
            t_down = time.monotonic()
            time.sleep(1.5)
            assert len(notify.between(t_down, time.monotonic(), "WATCHDOG=1")) >= 3  # "test" still flows
            status = notify.between(t_down, time.monotonic(), "STATUS=")
            assert status and "cam: " in status[-1] and "reconnecting" in status[-1] and "test: " in status[-1]
            metrics = scrape_metrics(c.stats()["per_stream"]["cam"]["metrics_port"])
            assert metrics['samtrack_source_up{stream="cam"}'] == 0
            assert metrics['samtrack_source_up{stream="test"}'] == 1
            server.start()
            deadline = time.monotonic() + 60
            while c.request("ping", {"stream": "cam"})["source"]["reconnects"] < 1 \
                    and time.monotonic() < deadline:
                time.sleep(0.2)
            back = frames("cam")
            _wait_frame(c, "cam", back + 3)
            assert frames("cam") >= back + 3  # frames flow again on the restarted camera
            assert before > 3 and during >= 0.6 * before, (before, during)
    finally:
        server.kill()
        assert d.stop() == 0
        notify.close()
