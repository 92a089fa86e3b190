"""Scenario `shutdown`: how long the daemon takes to exit after SIGTERM with a tracking step in flight.

A daemon is started per run on a live test source with objects, a result is awaited (a step has just
ended, the next one starts), then SIGTERM is sent `--delay` seconds into the next step and the time to
exit is measured. The target: under 2 s from the signal, whatever the step time.

    samtrack bench shutdown [--quick] [--runs 3] [--image-size 1024]
"""

from __future__ import annotations

import signal
import time

from bench.common import environment, percentiles, table, write_json
from bench.plots import over_time
from bench.scenario import object_boxes, outputs, scenario_parser, start_daemon
from tracker.client import Client, Result, Subscriber


def one_run(args) -> dict:
    w, h = args.width, args.height
    daemon = start_daemon(args, f"test:?pattern=ball&width={w}&height={h}&fps=30")
    try:
        with Client(daemon.commands, timeout=300) as c:
            for k, box in enumerate(object_boxes(args.objects[0], w, h)):
                c.add_box(k + 1, box)
            with Subscriber(daemon.results, "bench") as sub:
                deadline = time.monotonic() + 300
                while not isinstance(sub.recv(10.0), Result) and time.monotonic() < deadline:
                    pass
            step_ms = c.stats()["timings_ms"]["step"]["p50"]
        time.sleep(args.delay)
        t0 = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.proc.wait(timeout=120)
        exit_s = time.monotonic() - t0
    finally:
        daemon.stop()
    return {"exit_s": exit_s, "exit_code": code, "step_p50_ms": step_ms}


def parser():
    p = scenario_parser("shutdown", __doc__, frames=0, quick_frames=0)
    p.add_argument("--runs", type=int, default=3, help="daemons started and stopped")
    p.add_argument("--delay", type=float, default=0.3, help="seconds after a result before SIGTERM")
    p.set_defaults(image_size=1024, objects=[2])
    p.set_quick(runs=2, image_size=512)
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out or f"bench-results/shutdown-{args.image_size}.json", (".png",))
    runs = [one_run(args) for _ in range(args.runs)]
    exits = [r["exit_s"] for r in runs]
    data = {"benchmark": "shutdown", "settings": {k: getattr(args, k) for k in ("model", "image_size", "objects",
                                                                                "runs", "delay")},
            "environment": environment(args.threads), "runs": runs, "exit": percentiles(exits),
            "exit_codes": [r["exit_code"] for r in runs]}
    write_json(out, data)
    over_time({"SIGTERM to exit (s)": (list(range(1, len(exits) + 1)), exits)}, "seconds", "Exit after SIGTERM",
              out.with_suffix(".png"), xlabel="run")
    print(table([[i + 1, r["step_p50_ms"], 1000 * r["exit_s"], r["exit_code"]] for i, r in enumerate(runs)],
                ["run", "step p50 ms", "SIGTERM to exit ms", "exit code"]))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


if __name__ == "__main__":
    main()
