"""Scenario `streams`: N cameras served by one daemon (one model, `--source NAME=URI` repeated; with and
without `--batch-streams`) against N separate one-stream daemons, same test sources, in one run: total
RSS, per-stream fps (and its share of the one-stream rate), glass-to-mask p50/p99.

    samtrack bench streams [--quick] [--streams 1 2 4] [--seconds 60] [--fps 30]
"""

from __future__ import annotations

import statistics
import threading
import time

import psutil

from bench.common import environment, percentiles, table, write_json
from bench.plots import cdf
from bench.scenario import object_boxes, outputs, scenario_parser
from tracker.client import Client, Result, Subscriber
from tracker.client.spawn import DaemonProcess, start_daemon

RSS_EVERY_S = 1.0  # RSS sampling period (summed over the configuration's daemons)


def _daemons(args, n: int, mode: str) -> list[tuple[DaemonProcess, list[str]]]:
    """The configuration's daemons, each with the names of its streams."""
    w, h = args.width, args.height
    common = ["--image-size", str(args.image_size), "--model", args.model, "--no-metrics", "--threads",
              str(args.threads), "--device", args.device, "--log-level", "WARNING"]
    source = f"test:?pattern=ball&width={w}&height={h}&fps={args.fps}"
    names = [f"cam{i}" for i in range(n)]
    if mode in ("one daemon", "one daemon, batched"):
        flags = [x for name in names for x in ("--source", f"{name}={source}")]
        batched = ["--batch-streams"] if mode == "one daemon, batched" else []
        return [(start_daemon([*flags, *batched, *common]), names)]
    started = []
    try:
        for name in names:
            started.append((start_daemon(["--source", source, "--stream", name, *common]), [name]))
    except BaseException:
        for d, _ in started:
            d.stop()
        raise
    return started


def measure(args, n: int, mode: str) -> dict:
    daemons = _daemons(args, n, mode)
    latency: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    rss: list[int] = []
    stop = threading.Event()
    measuring = threading.Event()

    def listen(d: DaemonProcess) -> None:
        with Subscriber(d.results) as sub:
            while not stop.is_set():
                msg = sub.recv(0.5)
                if isinstance(msg, Result) and measuring.is_set():
                    name = msg.header["stream"]
                    latency.setdefault(name, []).append(msg.latency_ms() / 1000)
                    counts[name] = counts.get(name, 0) + 1

    threads = [threading.Thread(target=listen, args=(d,), daemon=True) for d, _ in daemons]
    try:
        for t in threads:
            t.start()
        box = object_boxes(1, args.width, args.height)[0]
        for d, names in daemons:
            for name in names:
                with Client(d.commands, timeout=120, stream=name) as c:
                    c.add_box(1, box)
        time.sleep(args.warmup_s)
        processes = [psutil.Process(d.proc.pid) for d, _ in daemons]
        measuring.set()
        t0 = time.monotonic()
        for k in range(1, int(args.seconds / RSS_EVERY_S) + 1):  # on schedule: a slow sample never drifts it
            time.sleep(max(0.0, t0 + k * RSS_EVERY_S - time.monotonic()))
            rss.append(sum(p.memory_info().rss for p in processes))
        elapsed = time.monotonic() - t0
        measuring.clear()
    finally:
        stop.set()
        for t in threads:
            t.join(5.0)
        codes = [d.stop() for d, _ in daemons]
    fps = {name: counts.get(name, 0) / elapsed for _, names in daemons for name in names}
    pooled = [x for v in latency.values() for x in v]
    return {"streams": n, "mode": mode, "daemons": len(daemons), "rss_bytes": int(statistics.median(rss)),
            "fps": fps, "fps_total": sum(fps.values()), "glass_to_mask": percentiles(pooled),
            "exit_codes": codes, "_latency": pooled}


def parser():
    p = scenario_parser("streams", __doc__, frames=0, quick_frames=0)
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4], help="stream counts to compare")
    p.add_argument("--seconds", type=float, default=60.0, help="measured time per configuration")
    p.add_argument("--warmup-s", type=float, default=10.0, help="after the prompts, before measuring")
    # 30 fps cameras: faster than one stream is tracked on a CPU, so the rates compared are tracking-bound
    p.add_argument("--fps", type=int, default=30, help="input rate of each test source")
    p.add_argument("--modes", nargs="+", default=["one daemon", "one daemon, batched", "separate daemons"],
                   choices=["one daemon", "one daemon, batched", "separate daemons"],
                   help="how several streams are served (one stream: always one daemon)")
    p.set_defaults(image_size=256, width=320, height=240)
    p.set_quick(seconds=15.0, warmup_s=5.0)
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out or f"bench-results/streams-{args.image_size}.json", (".png",))
    runs = []
    for n in args.streams:
        for mode in (["one daemon"] if n == 1 else args.modes):
            runs.append(measure(args, n, mode))
            r = runs[-1]
            print(f"{n} stream(s), {mode}: RSS {r['rss_bytes'] / 2**20:.0f} MiB, {r['fps_total']:.2f} fps in all",
                  flush=True)
    single = next((r for r in runs if r["streams"] == 1), None)
    for r in runs:
        if single is not None:
            fair = single["fps_total"] / r["streams"]  # the one-stream rate shared evenly
            r["rss_vs_one_stream"] = r["rss_bytes"] / single["rss_bytes"]
            r["fps_vs_fair_share"] = min(r["fps"].values()) / fair if fair else None
    data = {"benchmark": "streams", "settings": {k: getattr(args, k) for k in (
                "model", "image_size", "streams", "modes", "seconds", "warmup_s", "fps", "width", "height",
                "threads", "device")},
            "environment": environment(args.threads, args.device),
            "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]}
    write_json(out, data)
    cdf({f"{r['streams']} x {r['mode']}": [1000 * x for x in r["_latency"]] for r in runs},
        f"glass-to-mask, {args.fps} fps per camera, {args.image_size}px", out.with_suffix(".png"))
    print(table([[r["streams"], r["mode"], r["rss_bytes"] / 2**20, r.get("rss_vs_one_stream"),
                  min(r["fps"].values()), r.get("fps_vs_fair_share"), r["glass_to_mask"].get("p50_ms"),
                  r["glass_to_mask"].get("p99_ms")] for r in runs],
                ["streams", "mode", "RSS MiB", "RSS vs 1 stream", "min fps/stream", "vs fair share", "p50 ms",
                 "p99 ms"]))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


if __name__ == "__main__":
    main()
