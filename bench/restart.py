"""Scenario `restart`: what keeping a stream's state costs and what a restart costs with it.

Bytes of the state the daemon writes after each prompt, per object: a tracker at each size with N objects (one
prompt each), its state encoded as the daemon writes it; then one correction each on a later, tracked frame
(a correction is no conditioning frame, Meta's default: it adds nothing to keep). Then a daemon with a state
directory, objects prompted, SIGKILLed right after a result (a step in flight) and started again at once
(systemd's RestartSec aside): the time from the kill to the daemon's first result, and to its first result
that lists every restored object.

    samtrack bench restart [--quick] [--sizes 512 1024] [--objects 2] [--runs 2]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from bench.common import environment, percentiles, table, write_json
from bench.plots import over_time
from bench.scenario import object_boxes, outputs, scenario_parser
from pipelines.synthetic import moving_shapes_frame
from tracker import Tracker
from tracker.client import Client, Result, Subscriber, spawn
from tracker.core.state import encode_state
from tracker.models import seeded_model

IDENTITY = {"model": "bench", "weights_sha256": "0" * 64, "precision": "fp32", "stream": "bench", "samtrack": "bench"}


def state_bytes(args, size: int, n: int) -> dict:
    """Bytes of the state after one prompt per object, and after a correction of each on a later frame."""
    tracker = Tracker.from_sam2(seeded_model(args.model, size, device=args.device), precision="fp32")
    w, h = args.width, args.height
    tracker.step(moving_shapes_frame(0, h, w))
    for k, box in enumerate(object_boxes(n, w, h)):
        tracker.add_box(k + 1, box)
    one = len(encode_state(tracker.snapshot(), {**IDENTITY, "image_size": size}))
    tracker.step(moving_shapes_frame(1, h, w))
    for k, (x0, y0, x1, y1) in enumerate(object_boxes(n, w, h)):
        tracker.add_points(k + 1, [[(x0 + x1) / 2, (y0 + y1) / 2]], [1])
    two = len(encode_state(tracker.snapshot(), {**IDENTITY, "image_size": size}))
    return {"image_size": size, "objects": n, "bytes_one_prompt": one, "bytes_after_corrections": two,
            "per_object": one / n}


def kill_and_restart(args, state: Path) -> dict:
    """One daemon's SIGKILL in a step and its restart on the same state directory."""
    w, h = args.width, args.height
    serve = ["--source", f"test:?pattern=ball&width={w}&height={h}&fps=30", "--image-size", str(args.image_size),
             "--model", args.model, "--no-metrics", "--threads", str(args.threads), "--stream", "bench",
             "--device", args.device, "--log-level", "WARNING", "--state", str(state)]
    daemon = spawn.start_daemon(serve)
    ids = list(range(1, args.objects[0] + 1))
    with Client(daemon.commands, timeout=300) as c:
        for k, box in enumerate(object_boxes(len(ids), w, h)):
            c.add_box(k + 1, box)
    with Subscriber(daemon.results, "bench") as sub:
        deadline = time.monotonic() + 300
        while not isinstance(sub.recv(10.0), Result) and time.monotonic() < deadline:
            pass
    t0 = time.monotonic()
    daemon.proc.kill()
    daemon.proc.wait(timeout=60)
    proc = spawn.spawn_daemon([*serve, "--results", daemon.results, "--commands", daemon.commands])
    first = restored = None
    try:
        with Subscriber(daemon.results, "bench") as sub:
            deadline = time.monotonic() + 300
            while restored is None and time.monotonic() < deadline:
                msg = sub.recv(1.0)
                if isinstance(msg, Result):
                    first = first or time.monotonic() - t0
                    if {o["id"] for o in msg.header["objects"]} >= set(ids):
                        restored = time.monotonic() - t0
    finally:
        spawn.stop_daemon(proc)
    return {"kill_to_first_result_s": first, "kill_to_restored_result_s": restored, "objects": ids}


def parser():
    p = scenario_parser("restart", __doc__, frames=0, quick_frames=0)
    p.add_argument("--sizes", type=int, nargs="+", help="image sizes of the bytes measured (default: 512 1024)")
    p.add_argument("--runs", type=int, default=2, help="daemons killed and restarted")
    p.set_defaults(objects=[2])
    p.set_quick("--sizes: the --image-size alone", runs=1)
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([args.image_size] if args.quick else [512, 1024])
    out = outputs(p, args.out or f"bench-results/restart-{args.image_size}.json", (".png",))
    torch.set_num_threads(args.threads)
    sizes = [state_bytes(args, size, args.objects[0]) for size in args.sizes]
    with tempfile.TemporaryDirectory(prefix="samtrack-bench-restart-") as tmp:
        runs = [kill_and_restart(args, Path(tmp) / f"state-{k}") for k in range(args.runs)]
    data = {"benchmark": "restart", "settings": {k: getattr(args, k) for k in ("model", "image_size", "objects",
                                                                               "sizes", "runs", "width", "height")},
            "environment": environment(args.threads), "state_bytes": sizes, "runs": runs,
            "kill_to_restored_result": percentiles([r["kill_to_restored_result_s"] for r in runs
                                                    if r["kill_to_restored_result_s"] is not None])}
    write_json(out, data)
    over_time({"state per object": ([s["image_size"] for s in sizes], [s["per_object"] / 1024 for s in sizes])},
              "kB per object", "State written per prompt, per object", out.with_suffix(".png"),
              xlabel="image size (px)")
    print(table([[s["image_size"], s["objects"], s["bytes_one_prompt"] / 1024, s["per_object"] / 1024,
                  s["bytes_after_corrections"] / 1024] for s in sizes],
                ["size", "objects", "state kB", "kB/object", "state kB after corrections"]))
    print(table([[k + 1, r["kill_to_first_result_s"], r["kill_to_restored_result_s"]] for k, r in enumerate(runs)],
                ["run", "SIGKILL to first result s", "to first result with the restored objects s"]))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


if __name__ == "__main__":
    main()
