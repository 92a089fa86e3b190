"""GStreamer sinks and overlays, run for real (no mock of GStreamer): what samtrack writes and serves."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipelines.overlay import OverlayObject, color_for, draw_overlay
from pipelines.sinks import DisplaySink, LosslessFileSink, RtspServerSink, SinkError, VideoFileSink
from pipelines.source import GstSource
from tracker.client.spawn import free_port


def test_overlay_draws_mask_colour_contour_and_label():
    img = np.full((120, 160, 3), 100, np.uint8)
    m = np.zeros((120, 160), bool)
    m[40:90, 50:120] = True
    out = draw_overlay(img, [OverlayObject(2, m, 0.87)])
    inside = out[65, 85].astype(int)
    expected = np.round(100 * 0.55 + np.array(color_for(2)) * 0.45)
    assert np.abs(inside - expected).max() <= 1
    assert np.array_equal(out[5, 5], img[5, 5])  # outside untouched
    assert (out[40:90, 50] != inside).any()  # contour on the mask's edge
    assert not np.array_equal(out[20:40, 50:90], img[20:40, 50:90])  # label above the mask
    assert np.array_equal(img, np.full((120, 160, 3), 100, np.uint8))  # input not modified


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".webm", ".avi"])
def test_overlay_video_file_reads_back(ext, tmp_path):
    path = tmp_path / f"overlay{ext}"
    with VideoFileSink(path, 322, 242, 15) as sink:
        for i in range(15):
            img = np.zeros((242, 322, 3), np.uint8)
            img[:, :161] = (200, 30, 30)
            m = np.zeros((242, 322), bool)
            m[60:140, 40 + 4 * i:140 + 4 * i] = True
            sink.push(draw_overlay(img, [OverlayObject(1, m, 0.9)]))
    with GstSource(str(path)) as src:
        frames = list(src)
    assert len(frames) == 15 and {f.image.shape for f in frames} == {(242, 322, 3)}
    assert np.abs(frames[0].image[20, 20].astype(int) - (200, 30, 30)).max() < 25


def test_bad_outputs(tmp_path):
    with pytest.raises(SinkError, match="unsupported output extension"):
        VideoFileSink(tmp_path / "x.gif", 64, 48, 10)
    with pytest.raises(SinkError, match="output directory does not exist"):
        VideoFileSink(tmp_path / "no" / "x.mp4", 64, 48, 10)
    with VideoFileSink(tmp_path / "x.mp4", 64, 48, 10) as sink:
        with pytest.raises(SinkError, match="expects 48x64x3"):
            sink.push(np.zeros((10, 10, 3), np.uint8))
        sink.push(np.zeros((48, 64, 3), np.uint8))


def test_a_file_output_on_a_full_disk_fails_instead_of_blocking(tmp_path):
    """The recorder's lossless file (unbuffered) is /dev/full (every write: ENOSPC): a push raises SinkError within
    a few frames; it once blocked forever in appsrc's full queue once the pipeline had stopped on the error (a
    recorder never recovered)."""
    path = tmp_path / "full.mkv"
    path.symlink_to("/dev/full")
    sink = LosslessFileSink(path, 64, 48, 10)
    done = threading.Event()

    def push() -> None:
        try:
            for _ in range(100):  # bounded: far more than appsrc's queue and the encoder hold
                sink.push(np.zeros((48, 64, 3), np.uint8))
        except SinkError as e:
            assert "No space left" in str(e)
            done.set()

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    pusher.join(60)
    assert done.is_set() and not pusher.is_alive()
    with pytest.raises(SinkError):
        sink.close()


def test_display_sink_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="no display"):
        DisplaySink(64, 48, 10)


def test_rtsp_output_serves_pushed_frames():
    port = free_port()
    with RtspServerSink(160, 120, 15, port=port, mount="/out") as out:
        viewer = GstSource(f"rtsp://127.0.0.1:{port}/out#latency=0", start_timeout=15)
        stop = threading.Event()

        def feed():
            img = np.zeros((120, 160, 3), np.uint8)
            img[:, :80] = (20, 200, 20)
            while not stop.is_set():
                out.push(img)
                time.sleep(1 / 15)

        t = threading.Thread(target=feed, daemon=True)
        t.start()
        try:
            viewer.start()
            f = viewer.read(5.0)
            assert f is not None and f.image.shape == (120, 160, 3)
            assert np.abs(f.image[60, 20].astype(int) - (20, 200, 20)).max() < 40
            assert out.clients >= 1
        finally:
            viewer.stop()
            stop.set()
            t.join(timeout=2)
