"""GStreamer sources, run for real (no mock of GStreamer); the sinks are in tests/test_sinks.py."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from itertools import pairwise

import numpy as np
import pytest

from pipelines import (
    EndOfStream,
    MissingElementError,
    NotAVideoError,
    SourceNotFoundError,
    SourceSpecError,
    open_source,
    parse_source,
)
from pipelines.errors import SourceError
from pipelines.frame import rgb_from_buffer
from pipelines.live import Backoff, ReconnectingSource
from pipelines.source import GstSource
from pipelines.spec import SourceSpec, launch_description
from tests.gst_helpers import CODECS, block_image, block_means, encode_test_file
from tests.rtsp_server import RtspTestServer
from tracker.client.spawn import free_port

# ---- launch descriptions (pure) ---------------------------------------------------------------


def test_launch_descriptions():
    tail_live = ("videoconvert ! video/x-raw,format=RGB ! appsink name=samtrack_sink emit-signals=true sync=false "
                 "max-buffers=1 drop=true")
    tail_file = tail_live.replace("max-buffers=1 drop=true", "max-buffers=4 drop=false")
    assert launch_description(parse_source("test:")) == (
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=480,framerate=30/1 ! " + tail_live)
    assert launch_description(parse_source("test:?pattern=smpte&width=322&height=242&fps=15")) == (
        "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=322,height=242,framerate=15/1 ! " + tail_live)
    assert launch_description(parse_source("file:///tmp/a%20b.mp4")) == (
        'filesrc location="/tmp/a b.mp4" ! decodebin ! ' + tail_file)
    assert launch_description(parse_source("/tmp/x.mkv#realtime=1")).endswith("sync=true max-buffers=4 drop=false")
    assert launch_description(parse_source("v4l2:/dev/video1?width=1280&height=720&fps=30")) == (
        'v4l2src device="/dev/video1" ! image/jpeg,width=1280,height=720,framerate=30/1 ! jpegdec ! ' + tail_live)
    assert launch_description(parse_source("v4l2:/dev/video0?format=raw&fps=15")) == (
        'v4l2src device="/dev/video0" ! video/x-raw,framerate=15/1 ! ' + tail_live)
    assert launch_description(parse_source("rtsp://cam.local:554/s?a=1#latency=0&transport=udp")) == (
        'rtspsrc location="rtsp://cam.local:554/s?a=1" latency=0 protocols=udp ! decodebin ! ' + tail_live)
    assert launch_description(parse_source("gst:videotestsrc num-buffers=5")) == (
        "videotestsrc num-buffers=5 ! " + tail_file)
    assert parse_source("test:").live and not parse_source("/a.mp4").live


@pytest.mark.parametrize("text, words", [
    ("", "empty source"),
    ("http://example.com/v.mp4", "unsupported source scheme"),
    ("test:?colour=red", "unknown option(s) ['colour']"),
    ("test:?pattern=nope", "unknown test pattern"),
    ("test:?width=-5", "positive integer"),
    ("v4l2:/dev/video0?format=h264", "mjpeg or raw"),
    ("rtsp://h/x#transport=quic", "tcp or udp"),
    ("rtsp://h/x#latency=soon", "milliseconds"),
    ("gst:", "needs a launch description"),
])
def test_bad_source_strings(text, words):
    with pytest.raises(SourceSpecError) as e:
        parse_source(text)
    assert words in str(e.value)


def test_rgb_rows_padded_to_four_bytes():
    img = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    padded = np.zeros((3, 16), np.uint8)  # 5 px * 3 = 15 bytes, padded to 16
    padded[:, :15] = img.reshape(3, 15)
    out = rgb_from_buffer(padded.tobytes(), 5, 3)
    assert out.flags["C_CONTIGUOUS"] and np.array_equal(out, img)


# ---- sources ------------------------------------------------------------------------------------


def test_videotestsrc_frames():
    with GstSource("test:?width=322&height=242&fps=30") as src:
        frames = [src.read(2.0) for _ in range(20)]
    assert all(f is not None for f in frames)
    assert all(f.image.shape == (242, 322, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.image.flags["C_CONTIGUOUS"] for f in frames)
    assert src.info.width == 322 and src.info.fps == 30.0
    pts = [f.pts_ns for f in frames]
    cap = [f.capture_ns for f in frames]
    assert all(b > a for a, b in pairwise(pts)) and all(b > a for a, b in pairwise(cap))
    assert [f.index for f in frames] == sorted({f.index for f in frames})


@pytest.mark.parametrize("codec", list(CODECS))
def test_decoded_files_deliver_every_frame_with_the_right_pixels(codec, tmp_path):
    path = encode_test_file(tmp_path / f"blocks_322x242.{codec}", CODECS[codec], frames=12)
    ref = block_means(block_image())
    with GstSource(str(path)) as src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(12))
    assert src.dropped == 0
    for f in frames:
        assert f.image.shape == (242, 322, 3)
        err = np.abs(block_means(f.image) - ref).max()
        assert err < 12, f"{codec}: a block's colour is off by {err:.1f}"  # codec loss, no shear, no swap
    pts = [f.pts_ns for f in frames]
    assert all(b > a for a, b in pairwise(pts))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceNotFoundError, match="file not found: .*nope.mp4"):
        GstSource(str(tmp_path / "nope.mp4")).start()


def test_text_file_renamed_mp4_is_not_a_video(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("hello, I am not a video\n" * 50)
    t0 = time.monotonic()
    with pytest.raises(NotAVideoError, match="is not a video GStreamer can decode.*GStreamer says"):
        GstSource(str(p), start_timeout=10).start()
    assert time.monotonic() - t0 < 10


def test_audio_only_file_is_not_a_video(tmp_path):
    p = tmp_path / "tone.mkv"
    subprocess.run(f"gst-launch-1.0 -q audiotestsrc num-buffers=20 ! vorbisenc ! matroskamux ! filesink location={p}",
                   shell=True, check=True, timeout=60)
    with pytest.raises(NotAVideoError):
        GstSource(str(p), start_timeout=10).start()


def test_unknown_element_in_gst_description():
    with pytest.raises(MissingElementError, match='no element "notanelement"'):
        GstSource("gst:videotestsrc ! notanelement").start()


def test_no_camera():
    with pytest.raises(SourceNotFoundError, match="no camera at /dev/video99"):
        GstSource("v4l2:/dev/video99").start()


def test_live_source_drops_stale_frames_file_source_loses_none(tmp_path):
    """A slow consumer (200 ms per frame) of a 30 fps live source sees fresh frames and a growing drop
    counter; the same consumer of a file gets every frame."""
    with GstSource("test:?width=160&height=120&fps=30") as live:
        ages, drops = [], []
        for _ in range(6):
            time.sleep(0.2)
            f = live.read(1.0)
            ages.append((time.monotonic_ns() - f.capture_ns) / 1e6)
            drops.append(live.dropped)
    # the newest frame, not one queued 200 ms ago (a queue that kept frames would age them by 200 ms a read);
    # the max is loose for a busy machine, the median is what a healthy one shows
    assert sorted(ages)[len(ages) // 2] < 100 and max(ages) < 190, ages
    assert drops[-1] > drops[0] > 0
    path = encode_test_file(tmp_path / "f.mkv", CODECS["h264.mkv"], frames=10, width=160, height=120)
    with GstSource(str(path)) as src:
        got = []
        while True:
            time.sleep(0.05)
            try:
                got.append(src.read(5.0).index)
            except EndOfStream:
                break
    assert got == list(range(10)) and src.dropped == 0


def test_a_live_sources_indices_have_gaps_where_frames_were_dropped():
    """The daemon's source (reconnecting) read by a slow consumer: frame indices count the camera's frames, so
    the frames dropped for newer ones are the gaps between them (they were renumbered as delivered: no gap)."""
    src = open_source("test:?width=160&height=120&fps=30")
    try:
        src.start()
        frames, drops = [], []
        for _ in range(6):
            time.sleep(0.2)
            frames.append(src.read(2.0))
            drops.append(src.dropped)
    finally:
        src.stop()
    assert all(f is not None for f in frames)
    gaps = sum(b.index - a.index - 1 for a, b in pairwise(frames))
    # each drop is counted as a newer frame replaces a queued one: a frame arriving between a read and its
    # count may be counted before its index shows
    assert gaps > 0 and 0 <= (drops[-1] - drops[0]) - gaps <= 1, (gaps, drops, [f.index for f in frames])


@pytest.mark.slow
def test_rtsp_source_reconnects_after_server_restart():
    server = RtspTestServer(free_port()).start()
    src = open_source(f"{server.url}#latency=0", backoff=Backoff(initial_s=0.2, max_s=1.0), stall_timeout_s=2.0)
    try:
        src.start()
        before = [f for f in (src.read(2.0) for _ in range(10)) if f is not None]
        assert len(before) >= 5 and before[0].image.shape == (120, 160, 3)
        server.kill()
        deadline = time.monotonic() + 15
        while src.connected and time.monotonic() < deadline:  # the source notices the loss
            src.read(0.5)
        assert not src.connected, "the source did not notice the server went away"
        server.start()
        after = []
        while len(after) < 5 and time.monotonic() < deadline + 30:
            f = src.read(0.5)
            if f is not None:
                after.append(f)
        assert len(after) == 5, f"frames did not resume: {src.last_error}"
        assert src.reconnects >= 1
        assert after[0].index > before[-1].index  # indices continue across reconnects
    finally:
        src.stop()
        server.kill()


def test_reconnect_attempts_are_numbered_from_one(caplog):
    """The log counts reconnection attempts, not failures (the chaos soak's logs said "attempt 2" for the first)."""
    src = open_source(f"rtsp://127.0.0.1:{free_port()}/nobody", backoff=Backoff(initial_s=0.05, max_s=0.05),
                      fail_fast=False)
    with caplog.at_level(logging.WARNING, logger="pipelines.live"):
        try:
            assert src.start() is None  # nothing listens there: retried in the background
            deadline = time.monotonic() + 30
            while src.failures < 3 and time.monotonic() < deadline:
                src.read(0.1)
        finally:
            src.stop()
    assert re.findall(r"reconnect attempt (\d+) failed", caplog.text)[:2] == ["1", "2"], caplog.text


def test_opencv_fallback_reads_a_file(tmp_path):
    path = encode_test_file(tmp_path / "cv.avi", CODECS["mjpeg.avi"], frames=8)
    src = open_source(str(path), backend="opencv")
    with src:
        frames = list(src)
    assert len(frames) == 8 and frames[0].image.shape == (242, 322, 3)
    assert np.abs(block_means(frames[0].image) - block_means(block_image())).max() < 12


# ---- CLI ------------------------------------------------------------------------------------------


def _probe(source: str):
    return subprocess.run([sys.executable, "-m", "tracker.cli", "sources", "probe", source, "--timeout", "5"],
                          capture_output=True, text=True, timeout=60, env={**os.environ})


def test_probe_cli(tmp_path):
    r = _probe("test:?width=322&height=242&fps=15")
    assert r.returncode == 0, r.stderr
    assert "size     322x242" in r.stdout and "fps      15.0" in r.stdout and "caps     video/x-raw" in r.stdout
    assert "first    index 0, pts" in r.stdout
    path = encode_test_file(tmp_path / "p.mkv", CODECS["h264.mkv"], frames=3)
    r = _probe(str(path))
    assert r.returncode == 0 and "kind     file (file)" in r.stdout
    r = _probe(str(tmp_path / "missing.mp4"))
    assert r.returncode == 2 and "file not found" in r.stderr and "Traceback" not in r.stderr


class _SlowStopSource:
    """A stand-in camera whose frames fail at once and whose stop takes seconds (GStreamer's set_state(NULL) on
    a dead RTSP session can): the reconnecting wrapper must never make its caller wait for that."""

    spec = SourceSpec("test", "")
    stop_s = 2.0

    def __init__(self, log: list[str]):
        self.log, self.dropped, self.info = log, 0, None

    def start(self):
        self.log.append("start")

    def read(self, timeout: float = 1.0):
        raise SourceError("the camera went away")

    def stop(self) -> None:
        time.sleep(self.stop_s)
        self.log.append("stopped")


def test_a_failed_source_is_torn_down_off_the_callers_loop_and_threads_are_joined_at_stop():
    log: list[str] = []
    src = ReconnectingSource(lambda: _SlowStopSource(log), _SlowStopSource.spec, Backoff(0.01, 1.0, 0.01))
    src.start()
    t0 = time.monotonic()
    assert src.read(0.1) is None  # the failure: its teardown runs elsewhere
    assert time.monotonic() - t0 < _SlowStopSource.stop_s / 2
    deadline = time.monotonic() + 20
    while log.count("start") < 2 and time.monotonic() < deadline:  # the next attempt waits for the teardown
        src.read(0.05)
    assert log[:3] == ["start", "stopped", "start"], log
    src.stop()  # joins the reconnection and teardown threads (bounded)
    assert not any(t.name in ("reconnect", "source-teardown") for t in threading.enumerate() if t.is_alive())
