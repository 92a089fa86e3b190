"""Scenario `soak`: the daemon on a live test source for a long time, its RSS (and GPU memory where
present) sampled every second; growth after warm-up reported.

    samtrack bench soak [--quick] [--seconds 3600]
"""

from __future__ import annotations

import time

import psutil
import torch

from bench.common import environment, table, write_json
from bench.plots import over_time
from bench.scenario import object_boxes, outputs, scenario_parser, start_daemon
from tracker.client import Client


def parser():
    p = scenario_parser("soak", __doc__, frames=0, quick_frames=0)
    p.add_argument("--seconds", type=float, default=3600.0, help="how long the daemon runs")
    p.add_argument("--fps", type=int, default=10, help="input rate of the test source")
    p.add_argument("--warmup-fraction", type=float, default=0.25, help="share of the run excluded from growth")
    p.set_defaults(image_size=256, objects=[2])
    p.set_quick(seconds=90.0)
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out or f"bench-results/soak-{args.image_size}.json", (".png",))
    torch.set_num_threads(args.threads)
    w, h = args.width, args.height
    daemon = start_daemon(args, f"test:?pattern=ball&width={w}&height={h}&fps={args.fps}")
    ps = psutil.Process(daemon.proc.pid)
    t, rss, frames = [], [], []
    try:
        with Client(daemon.commands, timeout=60) as c:
            for k, box in enumerate(object_boxes(args.objects[0], w, h)):
                c.add_box(k + 1, box)
            t0 = time.monotonic()
            for k in range(1, int(args.seconds) + 1):  # one sample a second, on schedule: a slow reply never drifts it
                time.sleep(max(0.0, t0 + k - time.monotonic()))
                t.append(time.monotonic() - t0)
                rss.append(ps.memory_info().rss)
                frames.append(c.stats()["frames"])
    finally:
        code = daemon.stop()
    k0 = int(len(rss) * args.warmup_fraction)
    growth = (rss[-1] - rss[k0]) / rss[k0] if rss else 0.0
    data = {"benchmark": "soak", "settings": {k: getattr(args, k) for k in ("model", "image_size", "objects",
                                                                            "seconds", "fps", "warmup_fraction")},
            "environment": environment(args.threads), "samples": {"t_s": t, "rss_bytes": rss, "frames": frames},
            "rss_growth_after_warmup": growth, "rss_max_bytes": max(rss) if rss else 0,
            "frames": frames[-1] if frames else 0, "gpu_memory_bytes": None, "daemon_exit_code": code}
    write_json(out, data)
    over_time({"daemon RSS (MiB)": (t, [r / 2**20 for r in rss])}, "MiB", "RSS over time",
              out.with_suffix(".png"), xlabel="seconds")
    print(table([[f"{t[-1]:.0f} s" if t else "-", frames[-1] if frames else 0, rss[k0] / 2**20 if rss else 0,
                  rss[-1] / 2**20 if rss else 0, f"{100 * growth:.2f} %"]],
                ["duration", "frames", "RSS after warm-up MiB", "RSS end MiB", "growth"]))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


if __name__ == "__main__":
    main()
