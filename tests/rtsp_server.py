"""A test RTSP camera on 127.0.0.1 (a live H.264 test pattern), for the benchmarks and the tests:
`RtspTestServer(port).start()` runs it as a process that can be killed and started again on the same port.

    python tests/rtsp_server.py PORT [MOUNT] [FPS]
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

START_TIMEOUT_S = 20.0  # GStreamer's registry scan on a cold machine can take seconds


class RtspTestServer:
    """This file as a subprocess; start / kill / start again on the same port."""

    def __init__(self, port: int, mount: str = "/test", fps: int = 30):
        self.port, self.mount, self.fps, self.proc = port, mount, fps, None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def start(self) -> RtspTestServer:
        """Start the server; return once it listens (RuntimeError if it does not within START_TIMEOUT_S)."""
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), str(self.port), self.mount, str(self.fps)],
                                     stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"the RTSP test server did not start on port {self.port}: {line!r}")
        return self

    def kill(self) -> None:
        """SIGKILL, as a camera losing power: clients see their connection drop, nothing is said."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc.stdout.close()
            self.proc = None


def main() -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    port, mount = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/test"
    fps = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    Gst.init(None)
    server = GstRtspServer.RTSPServer(address="127.0.0.1", service=port)
    factory = GstRtspServer.RTSPMediaFactory()
    # a keyframe every half second: a client that (re)connects decodes its first picture that soon
    factory.set_launch(f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,"
                       f"framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast "
                       f"key-int-max={max(1, fps // 2)} ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *a: loop.quit())
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
