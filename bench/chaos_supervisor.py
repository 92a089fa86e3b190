"""The chaos benchmark's stand-in for systemd: runs `samtrack serve` with a notify socket and the shipped
unit's watchdog, restarts it after a crash (or the harness's SIGKILL) as Restart=on-failure with the unit's
RestartSec would, and keeps each instance's log; also runs the `samtrack view` process."""

from __future__ import annotations

import bisect
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.notify import NotifySocket
from tracker.client import spawn
from tracker.client.spawn import free_port

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "samtrack.service"
READY_TIMEOUT_S = 180.0  # model loading on a busy 2-core CPU; a daemon that takes longer has failed


def unit_setting(name: str, default: float) -> float:
    """A seconds setting of the shipped systemd unit (RestartSec, WatchdogSec), else `default`."""
    try:
        m = re.search(rf"^{name}=(\d+(?:\.\d+)?)\s*$", UNIT.read_text(), flags=re.M)
    except OSError:
        return default
    return float(m.group(1)) if m else default


class Supervisor:
    """One daemon at a time on fixed endpoints; `instance` counts starts (0 = the first)."""

    def __init__(self, serve_args: list[str], log_dir: Path):
        self.serve_args = serve_args
        self.results, self.commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="samtrack-chaos-")
        self.notify = NotifySocket(Path(self._tmp.name) / "notify.sock")
        self.restart_s = unit_setting("RestartSec", 0.1)  # systemd's default RestartSec is 100 ms
        self.watchdog_s = unit_setting("WatchdogSec", 0.0)
        self.starts_unix_ns: list[int] = []  # when each instance was spawned (results are attributed by it)
        self.ready_s: list[float] = []  # spawn to READY=1, per instance
        self.kills: list[dict] = []  # the harness's SIGKILLs: kill to READY, restart delay included
        self.crashes: list[dict] = []  # exits nobody asked for
        self.viewer_crashes: list[int] = []
        self.proc: subprocess.Popen | None = None
        self.viewer: subprocess.Popen | None = None
        self._viewer_port = free_port()

    @property
    def instance(self) -> int:
        return len(self.starts_unix_ns) - 1

    def instance_of(self, publish_unix_ns: int) -> int:
        return max(0, bisect.bisect_right(self.starts_unix_ns, publish_unix_ns) - 1)

    def start(self) -> float:
        """Spawn an instance and wait for its READY=1 on the notify socket; seconds it took."""
        t0 = time.monotonic()
        self.starts_unix_ns.append(time.time_ns())
        env = {"NOTIFY_SOCKET": self.notify.path}
        if self.watchdog_s:
            env["WATCHDOG_USEC"] = str(int(self.watchdog_s * 1e6))
        self.proc = spawn.spawn_daemon([*self.serve_args, "--results", self.results, "--commands", self.commands],
                                       env=env, log=self.log_dir / f"daemon-{self.instance}.log")
        while not self.notify.between(t0, float("inf"), "READY=1"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with code {self.proc.returncode} before READY=1: see "
                                   f"{self.log_dir / f'daemon-{self.instance}.log'}")
            if time.monotonic() - t0 > READY_TIMEOUT_S:
                raise RuntimeError(f"no READY=1 within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        self.ready_s.append(time.monotonic() - t0)
        return self.ready_s[-1]

    def kill_and_restart(self) -> None:
        """SIGKILL, then what Restart=on-failure does: wait RestartSec, start again."""
        t0 = time.monotonic()
        self.proc.kill()
        self.proc.wait(timeout=30)
        time.sleep(self.restart_s)
        spawn_to_ready = self.start()
        self.kills.append({"at_mono": t0, "kill_to_ready_s": time.monotonic() - t0,
                           "spawn_to_ready_s": spawn_to_ready, "restart_sec": self.restart_s})

    def restart_if_crashed(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.crashes.append({"at_mono": time.monotonic(), "instance": self.instance,
                                 "exit_code": self.proc.returncode})
            time.sleep(self.restart_s)
            self.start()
        if self.viewer is not None and self.viewer.poll() is not None:
            self.viewer_crashes.append(self.viewer.returncode)
            self.start_viewer()

    def rss(self) -> int | None:
        try:
            return psutil.Process(self.proc.pid).memory_info().rss
        except (psutil.Error, AttributeError):
            return None

    def watchdog_gaps(self) -> list[float]:
        """Longest silence between WATCHDOG=1 pings within each instance (systemd kills after WatchdogSec)."""
        starts = [k["at_mono"] for k in self.kills] + [float("inf")]
        pings = [t for t, m in self.notify.messages if m.startswith("WATCHDOG=1")]
        gaps, lo = [], 0.0
        for hi in starts:
            inside = [t for t in pings if lo <= t < hi]
            gaps.append(max((b - a for a, b in zip(inside, inside[1:])), default=0.0))
            lo = hi
        return gaps

    def start_viewer(self) -> str:
        """`samtrack view` on the daemon; the page's URL."""
        with open(self.log_dir / "viewer.log", "ab") as out:  # the child keeps its own descriptor
            self.viewer = subprocess.Popen([sys.executable, "-m", "tracker.cli", "view", "--results", self.results,
                                            "--commands", self.commands, "--port", str(self._viewer_port)],
                                           stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self.viewer.poll() is None and time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self._viewer_port)) == 0:
                    break
            time.sleep(0.1)
        return f"http://127.0.0.1:{self._viewer_port}/"

    def stop(self) -> tuple[int | None, int | None]:
        """SIGTERM the daemon and the viewer; their exit codes (0: a clean shutdown)."""
        code = spawn.stop_daemon(self.proc) if self.proc is not None else None
        viewer = spawn.stop_daemon(self.viewer) if self.viewer is not None else None
        self.notify.close()
        self._tmp.cleanup()
        return code, viewer

    def log_lines(self, prefix: str) -> list[str]:
        """Lines of every instance's log (and the viewer's) that start with `prefix` ("Traceback", "ERROR ")."""
        return [f"{path.name}: {line.strip()}" for path in sorted(self.log_dir.glob("*.log"))
                for line in path.read_text(errors="replace").splitlines() if line.startswith(prefix)]
