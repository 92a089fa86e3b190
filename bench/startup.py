"""Scenario `startup`: seconds from `samtrack serve` starting to READY (answering ping) and to its first result,
with an empty engine cache (the compiled backends convert their graphs) and then warm, per backend.

Each run is a fresh daemon process on a test source; the cold run gets a fresh cache directory, the warm runs
reuse it. The goal: READY within 10 s with a warm cache at 1024 px on the default backend.

    samtrack bench startup [--quick] [--runs 2] [--backends auto torch] [--image-size 1024]
"""

from __future__ import annotations

import tempfile
import time

from bench.common import environment, percentiles, table, write_json
from bench.plots import over_time
from bench.scenario import outputs, scenario_parser
from tracker.client import Result, Subscriber, spawn
from tracker.client.spawn import free_port, wait_ready
from tracker.core.options import BACKEND_CHOICES


def one_start(args, backend: str, cache: str) -> dict:
    """One daemon started, timed to its ping answer and its first published result, then stopped."""
    results, commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = spawn.spawn_daemon(
        ["--source", f"test:?width={args.width}&height={args.height}&fps=30", "--image-size", str(args.image_size),
         "--model", args.model, "--backend", backend, "--threads", str(args.threads), "--no-metrics", "--no-state",
         "--stream", "bench", "--log-level", "WARNING", "--results", results, "--commands", commands],
        env={"XDG_CACHE_HOME": cache})  # the engine cache under it: cold when new, warm when reused
    try:
        wait_ready(proc, commands, timeout_s=args.timeout, need_frame=False)
        ready_s = time.monotonic() - t0
        first = None
        with Subscriber(results, "bench") as sub:
            deadline = t0 + args.timeout
            while first is None and time.monotonic() < deadline:  # bounded: status messages come between results
                msg = sub.recv(max(0.1, deadline - time.monotonic()))
                first = msg if isinstance(msg, Result) else None
        first_s = time.monotonic() - t0
    finally:
        code = spawn.stop_daemon(proc)
    return {"ready_s": ready_s, "first_result_s": first_s if first is not None else None, "exit_code": code}


def positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise ValueError(text)
    return n


def parser():
    p = scenario_parser("startup", __doc__, frames=0, quick_frames=0)
    p.add_argument("--runs", type=positive_int, default=2, help="warm starts per backend (after its cold start)")
    p.add_argument("--backends", nargs="+", choices=BACKEND_CHOICES, default=["auto", "torch"],
                   help="engines measured, each cold (empty cache) then warm")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a start may take before the run fails")
    p.set_defaults(image_size=1024)
    p.set_quick(runs=1, image_size=256)
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out or f"bench-results/startup-{args.image_size}.json", (".png",))
    measured: dict[str, dict] = {}
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix="samtrack-startup-") as cache:
            cold = one_start(args, backend, cache)
            warm = [one_start(args, backend, cache) for _ in range(args.runs)]
        measured[backend] = {"cold": cold, "warm": warm, "warm_ready": percentiles([w["ready_s"] for w in warm])}
    data = {"benchmark": "startup", "settings": {k: getattr(args, k) for k in ("model", "image_size", "runs",
                                                                               "backends")},
            "environment": environment(args.threads), "results": measured}
    write_json(out, data)
    over_time({b: (list(range(args.runs + 1)), [m["cold"]["ready_s"]] + [w["ready_s"] for w in m["warm"]])
               for b, m in measured.items()}, "seconds to READY", f"samtrack serve start-up at {args.image_size} px",
              out.with_suffix(".png"), xlabel="start (0: empty engine cache)")
    rows = [[b, m["cold"]["ready_s"], m["cold"]["first_result_s"], m["warm_ready"]["p50_ms"] / 1000,
             m["warm_ready"]["max_ms"] / 1000, max(w["first_result_s"] or float("nan") for w in m["warm"])]
            for b, m in measured.items()]
    print(table(rows, ["backend", "cold READY s", "cold 1st result s", "warm READY p50 s", "warm READY max s",
                       "warm 1st result max s"]))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


if __name__ == "__main__":
    main()
