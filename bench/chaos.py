"""Scenario `chaos`: a two-stream daemon (`cam` on an RTSP camera that is killed and restarted, `pattern` on a
test source) under hostile and valid request traffic from DEALER and REQ clients, subscribers that come and
go, a viewer page reloaded in a real browser, and one SIGKILL restarted as systemd's Restart=on-failure
would. Reports crashes, replies per error code, valid prompts applied and checked in the results that
follow, the gap after the camera returns, RSS growth, request latency and SIGKILL-to-READY.

    samtrack bench chaos [--quick] [--seconds 3600]
"""

from __future__ import annotations

import random
import threading
import time

import zmq

from bench.chaos_report import Outage, report
from bench.chaos_requests import BAD_TIMEOUT_S, REPLY_TIMEOUT_S, Channel, Checks, Malformed, Sent, Valid
from bench.chaos_supervisor import Supervisor
from bench.chaos_watch import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Churn,
    Reloads,
    ResultLog,
    churn_subscribers,
    read_results,
    reload_viewer,
)
from bench.common import environment, write_json
from bench.scenario import outputs, scenario_parser
from tests.rtsp_server import RtspTestServer
from tracker.client import Client
from tracker.client.spawn import free_port
from tracker.paths import existing_file

SAMPLE_EVERY_S = 1.0  # RSS, frames and reconnects
DRAIN_S = 30.0  # after the last request, the results that check the last prompts come within this
TICK_S = 0.1  # the harness's schedule resolution (camera kills and returns, crash checks)
STREAMS = ["cam", "pattern"]


def parser():
    p = scenario_parser("chaos", __doc__, frames=0, quick_frames=0)
    p.add_argument("--seconds", type=float, default=3600.0, help="length of the run after the daemon is ready")
    p.add_argument("--flap-every", type=float, default=60.0, help="the RTSP camera is killed this often")
    p.add_argument("--down", type=float, nargs=2, default=[1.0, 10.0], metavar=("MIN", "MAX"),
                   help="...and stays down for a random time in this range (seconds)")
    p.add_argument("--kill-at", type=float, default=0.2, help="SIGKILL the daemon at this fraction of the run")
    p.add_argument("--rate", type=float, default=10.0, help="requests per second, all clients, half malformed")
    p.add_argument("--camera-fps", type=int, default=15, help="the RTSP camera's frame rate")
    p.add_argument("--pattern-fps", type=int, default=10, help="the test source's frame rate")
    p.add_argument("--reload-every", type=float, default=60.0, help="viewer page reloads (0: no browser)")
    p.add_argument("--churn-life", type=float, default=20.0, help="longest life of a coming-and-going subscriber")
    p.add_argument("--warmup-fraction", type=float, default=0.25,
                   help="share of the time after the restart excluded from RSS growth")
    p.add_argument("--seed", type=int, default=0, help="seed of the schedule (kills, requests)")
    p.add_argument("--chromium", type=existing_file("browser executable"),
                   help=f"the browser the viewer's page is reloaded in (default: {CHROMIUM})")
    p.set_defaults(image_size=256, width=160, height=120, threads=1)
    p.set_quick(seconds=90.0, flap_every=15.0, reload_every=20.0, churn_life=8.0)
    return p


class Traffic:
    """The client threads: malformed requests on two DEALERs and a REQ, valid ones on a DEALER and a REQ."""

    def __init__(self, endpoint: str, rate: float, malformed: Malformed, valid: Valid, stop: threading.Event,
                 seed: int):
        self.sent: list[Sent] = []
        self.endpoint, self.rate, self.malformed, self.valid, self.stop = endpoint, rate, malformed, valid, stop
        self._ctx = zmq.Context.instance()
        kinds = [("bad", zmq.DEALER), ("bad", zmq.DEALER), ("bad", zmq.REQ), ("ok", zmq.DEALER), ("ok", zmq.REQ)]
        self.threads = [threading.Thread(target=self._run, args=(what, kind, k, seed + k), daemon=True)
                        for k, (what, kind) in enumerate(kinds)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(REPLY_TIMEOUT_S + 5)

    def _run(self, what: str, kind: int, k: int, seed: int) -> None:
        rng = random.Random(seed)
        per_thread = self.rate / 2 / (3 if what == "bad" else 2)  # half malformed, half valid
        channel = Channel(self._ctx, self.endpoint, kind)
        rid = k * 10**9
        try:
            while not self.stop.is_set():
                rid += 1
                if what == "bad":
                    name, frames, expected = self.malformed.make(rid, dealer=kind == zmq.DEALER)
                    s = Sent(f"bad:{name}", None, time.monotonic(), expected=expected)
                    reply = channel.call(frames, BAD_TIMEOUT_S)
                    if reply is not None:
                        s.latency_s = time.monotonic() - s.sent_mono
                        s.code = None if reply.get("ok") else reply.get("error", {}).get("code", "unreadable")
                else:
                    s = self.valid.send(channel, rid)
                if s is not None:
                    self.sent.append(s)
                self.stop.wait(rng.expovariate(per_thread))
        finally:
            channel.close()


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY_S: the daemon's RSS, and each stream's frames, reconnects and connection."""

    def __init__(self, supervisor: Supervisor, stop: threading.Event):
        super().__init__(daemon=True)
        self.supervisor, self.stop = supervisor, stop
        self.samples: list[dict] = []

    def run(self) -> None:
        t0 = time.monotonic()
        with Client(self.supervisor.commands, timeout=2.0) as c:
            for k in range(1, 10**7):  # on schedule: a slow reply never drifts it; ends with `stop`
                if self.stop.wait(max(0.0, t0 + k * SAMPLE_EVERY_S - time.monotonic())):
                    return
                sample = {"t": time.monotonic(), "instance": self.supervisor.instance, "rss": self.supervisor.rss()}
                try:
                    per = c.stats()["per_stream"]
                    sample["streams"] = {s: {"frames": v["frames"], "reconnects": v["source"]["reconnects"],
                                             "connected": v["source"]["connected"]} for s, v in per.items()}
                except Exception as e:  # noqa: BLE001 - a restarting daemon: the sample says so
                    sample["error"] = type(e).__name__
                self.samples.append(sample)


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    out = outputs(p, args.out or f"bench-results/chaos-{args.image_size}.json", (".png",), dirs=(".logs",))
    camera = RtspTestServer(free_port(), fps=args.camera_fps).start()
    pattern = f"test:?pattern=ball&width={args.width}&height={args.height}&fps={args.pattern_fps}"
    logs = out.with_suffix(".logs")
    supervisor = Supervisor(["--source", f"cam={camera.url}", "--source", f"pattern={pattern}",
                             "--image-size", str(args.image_size), "--model", args.model, "--threads",
                             str(args.threads), "--device", args.device, "--preview-every", "3",
                             "--metrics-port", "0", "--log-level", "INFO", "--state", str(logs / "state")],
                            logs)
    stop, quiet = threading.Event(), threading.Event()  # quiet: no more requests; stop: everything stops
    log, checks, churn, reloads = ResultLog(), Checks(), Churn(), Reloads()
    outages: list[Outage] = []
    try:
        supervisor.start()

        def newest(stream: str) -> int | None:
            """The newest frame of `stream` seen from the running daemon (None: none yet)."""
            return log.newest.get((supervisor.instance, stream))

        def first(stream: str) -> int | None:
            """The first frame of `stream` seen from the running daemon (a restarted one numbers on from its lease)."""
            return log.first.get((supervisor.instance, stream))

        valid = Valid(STREAMS, args.width, args.height, random.Random(args.seed + 100), checks, newest=newest,
                      first=first, instance=lambda: supervisor.instance)
        traffic = Traffic(supervisor.commands, args.rate, Malformed(STREAMS, args.width, args.height, rng, newest),
                          valid, quiet, args.seed + 200)
        sampler = Sampler(supervisor, stop)
        threads = [threading.Thread(target=read_results, args=(supervisor.results, log, checks,
                                                               supervisor.instance_of, stop), daemon=True),
                   *(threading.Thread(target=churn_subscribers, args=(supervisor.results, STREAMS,
                                                                      random.Random(args.seed + 300 + k), churn, stop,
                                                                      args.churn_life), daemon=True)
                     for k in range(2)), sampler]
        if args.reload_every > 0:
            viewer = supervisor.start_viewer()
            browser = args.chromium or CHROMIUM
            threads.append(threading.Thread(target=reload_viewer, args=(viewer, args.reload_every, reloads, stop,
                                                                        browser, CHROMIUM_ARGS), daemon=True))
        else:
            reloads.skipped = "--reload-every 0"
        for t in threads:
            t.start()
        traffic.start()
        t0 = time.monotonic()
        _schedule(args, t0, supervisor, camera, valid, checks, outages, rng)
        quiet.set()
        traffic.join()
        deadline = time.monotonic() + DRAIN_S  # the last prompts' results, then the readers stop
        while checks.waiting() and time.monotonic() < deadline:
            time.sleep(TICK_S)
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        quiet.set()
        stop.set()
        exit_codes = supervisor.stop()
        camera.kill()
    data = report(args, t0, supervisor, traffic.sent, valid, checks, log, churn, reloads, outages, sampler.samples,
                  exit_codes, out.with_suffix(".png"))
    data["environment"] = environment(args.threads)
    write_json(out, data)
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


def _schedule(args, t0: float, supervisor: Supervisor, camera: RtspTestServer, valid: Valid, checks: Checks,
              outages: list[Outage], rng: random.Random) -> None:
    """The run's events, in order, on this thread: camera kills and returns, the one SIGKILL of the daemon
    (while the camera is up, once every valid request has its reply and its check), crash restarts."""
    end, kill_at = t0 + args.seconds, t0 + args.kill_at * args.seconds
    next_flap, down_until, killed_at = t0 + args.flap_every, None, None
    while time.monotonic() < end:
        now = time.monotonic()
        supervisor.restart_if_crashed()
        if down_until is None and killed_at is None and now >= kill_at:
            with valid.lock:  # no valid request in flight; wait (bounded) for the results that check them
                deadline = time.monotonic() + 30
                while checks.waiting() and time.monotonic() < deadline:
                    time.sleep(TICK_S)
                before = {s: sorted(valid.objects[s]) for s in STREAMS}
                supervisor.kill_and_restart()
                supervisor.kills[-1].update(objects_before=before, objects_restored=_listed(supervisor.commands))
            killed_at = now
        elif down_until is None and now >= next_flap and now + args.down[1] + args.flap_every / 2 < end:
            camera.kill()
            down_until = now + rng.uniform(*args.down)
            outages.append(Outage(now, 0.0, supervisor.instance))
        elif down_until is not None and now >= down_until:
            camera.start()
            outages[-1].up_mono = time.monotonic()
            next_flap, down_until = outages[-1].down_mono + args.flap_every, None
        time.sleep(TICK_S)


def _listed(commands: str) -> dict[str, list[int]]:
    """Each stream's objects as the daemon lists them (the restarted daemon's restored objects)."""
    with Client(commands, timeout=30.0) as c:
        return {s: sorted(o["id"] for o in c.request("list_objects", {"stream": s})["objects"]) for s in STREAMS}


if __name__ == "__main__":
    main()
