"""Scenario `e2e`: the daemon on a test source at a fixed input rate; glass-to-mask latency measured
from each frame's capture time to the moment a subscriber has decoded its first answer, the share of the
camera's frames answered (distinct frames with a result, counted by the source's timestamps, over the frames
the camera produced), the key-frame rate (frames the model ran on, a second) and achieved fps. Daemon
configurations are measured one after the other, per image size: "exact" (precision fp32, publishing on the
tracking thread, the model's frames only: samtrack before its fast path), "drop" (the defaults, but frames the
model does not take are dropped: samtrack before frames were answered by motion) and "fast" (the defaults:
every frame answered, by motion between key frames).

With --source, a video file or a recording (`serve --record`) stands in for the test source: a recording's
frames come at the pace they were captured.

    samtrack bench e2e [--quick] [--fps 5] [--seconds 60] [--min-key-frames N] [--sizes 256 512]
                       [--configs exact drop fast] [--source S]
"""

from __future__ import annotations

import time

import torch

from bench.common import environment, percentiles, table, write_json
from bench.plots import cdf, over_time
from bench.scenario import add_source_option, object_boxes, outputs, scenario_parser, start_daemon
from tracker.client import Client, Result, StreamEnd, Subscriber

# After the measured span, how long answers of its frames still on their way are waited for (a key frame's model
# answer comes after motion's answers of the frames behind it: a few model steps at most).
DRAIN_S = 5.0
# How much longer than --seconds the span may run to get --min-key-frames model answers (a starved machine): bounded.
MIN_KEY_FRAMES_WAIT = 10.0
CONFIGS = {"exact": ["--precision", "fp32", "--publish-queue", "0", "--between-key-frames", "drop"],
           "drop": ["--between-key-frames", "drop"], "fast": []}


def measure(args, size: int, config: str) -> dict:
    """One daemon, one configuration: latency, fps, drops after warm-up."""
    w, h = args.width, args.height
    args.image_size = size
    source = args.source or f"test:?pattern=ball&width={w}&height={h}&fps={args.fps}"
    daemon = start_daemon(args, source, CONFIGS[config])
    lat, stages, arrivals = [], {}, []
    firsts: dict[int, Result] = {}  # frame -> its first answer (after warm-up)
    model_at: list[float] = []  # arrival times of the model's answers (key frames)
    try:
        with Client(daemon.commands, timeout=60) as c, Subscriber(daemon.results, "bench") as sub:
            for k, box in enumerate(object_boxes(args.objects[0], w, h)):
                c.add_box(k + 1, box)
            seen, t_end, cut, head, last = 0, None, None, None, None
            t_start, dropped0, first_frame, publish_dropped0, gaps0 = time.monotonic(), 0, None, 0, 0
            while True:
                now_t = time.monotonic()
                if t_end is not None and cut is None and now_t >= t_end and (
                        len(model_at) >= args.min_key_frames or now_t >= t_end + MIN_KEY_FRAMES_WAIT * args.seconds):
                    # the span ends at the newest frame answered; a key frame in it whose model answer is still
                    # on its way (motion answered the frames after it first) is waited for, DRAIN_S at most
                    cut, head, drain_end = max(firsts, default=first_frame), last.header, time.monotonic() + DRAIN_S
                if cut is not None and (time.monotonic() >= drain_end
                                        or all(f in firsts for f in range(first_frame + 1, cut + 1))):
                    break
                msg = sub.recv(1.0 if cut is not None else 10.0)
                if msg is None and cut is not None:
                    continue
                if msg is None or isinstance(msg, StreamEnd):  # a file or recording source can end first
                    break
                if not isinstance(msg, Result) or (cut is not None and msg.frame > cut):
                    continue
                seen, last = seen + 1, msg
                if seen == args.warmup:
                    t_start, dropped0, first_frame = time.monotonic(), msg.header["dropped"], msg.frame
                    publish_dropped0, gaps0 = msg.header["publish_dropped"], sub.gaps
                    t_end = t_start + args.seconds
                if seen > args.warmup:
                    now = time.monotonic() - t_start
                    if msg.source == "model":
                        model_at.append(now)
                    if msg.revision > 0 or msg.frame in firsts:
                        continue  # a frame answered again: latency counts its first answer
                    firsts[msg.frame] = msg
                    lat.append(msg.latency_ms() / 1000)
                    arrivals.append(now)
                    for k, v in msg.header["timings_ms"].items():
                        stages.setdefault(k, []).append(v)
            if not lat:
                raise RuntimeError(f"no results after warm-up from {daemon.results}")
            head = head or last.header  # the counters as the span ended (a source that ended: its last answer)
            dropped = head["dropped"] - dropped0
            publish_dropped = head["publish_dropped"] - publish_dropped0
            daemon_fps = None if isinstance(msg, StreamEnd) else c.stats()["fps"]  # an ended daemon has exited
            gaps = sub.gaps - gaps0
    finally:
        code = daemon.stop()
    elapsed = arrivals[-1] if arrivals else 0.0
    produced, answered = camera_frames(firsts.values(), None if args.source else args.fps)
    key_rate = (len(model_at) - 1) / (model_at[-1] - model_at[0]) if len(model_at) > 1 else 0.0
    return {
        "config": config, "image_size": size, "serve_flags": CONFIGS[config],
        "glass_to_mask": percentiles(lat), "stages": {k: percentiles([x / 1000 for x in v]) for k, v in stages.items()},
        "achieved_fps": (len(lat) - 1) / elapsed if elapsed else 0.0,
        "camera_frames": produced, "answered_frames": answered,
        "answered_share": answered / produced if produced else 0.0, "key_frame_fps": key_rate,
        "motion_frames": sum(r.source == "motion" for r in firsts.values()),
        "input_fps": None if args.source else args.fps,
        # after warm-up: frames the source dropped, results the publisher dropped, results lost on the way
        "dropped_frames": dropped, "publish_dropped": publish_dropped, "results_lost": gaps, "frames": len(lat),
        "first_frame": first_frame, "last_frame": cut if cut is not None else last.frame, "measured_s": elapsed,
        "daemon_exit_code": code, "daemon_fps": daemon_fps, "_lat": lat, "_arrivals": arrivals,
    }


def camera_frames(results, fps: float | None) -> tuple[int, int]:
    """(frames the camera produced, frames of them answered) between the first and the last frame answered, by the
    source's timestamps at a known rate (else by the source's frame indices)."""
    if fps:
        stamps = {round(r.header["pts_ns"] * fps / 1e9) for r in results if r.header["pts_ns"] is not None}
    else:
        stamps = {r.header["source_index"] for r in results}
    if not stamps:
        return 0, 0
    return max(stamps) - min(stamps) + 1, len(stamps)


def parser():
    p = scenario_parser("e2e", __doc__, frames=0, quick_frames=0)
    p.add_argument("--fps", type=int, default=5, help="input rate of the test source (a --source keeps its own)")
    p.add_argument("--seconds", type=float, default=60.0, help="measured duration per configuration")
    p.add_argument("--min-key-frames", type=int, default=0,
                   help="measure past --seconds until this many model answers came (at most 10x as long)")
    p.add_argument("--sizes", type=int, nargs="+", help="image sizes (default: --image-size)")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["exact", "drop", "fast"],
                   help="daemon configurations: exact (fp32, publishing inline, the model's frames only), drop (as "
                        "serve runs by itself, but the model's frames only), fast (as serve runs by itself: every "
                        "frame answered)")
    add_source_option(p)
    p.set_defaults(image_size=256, objects=[1])
    p.set_quick(seconds=30.0)
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    sizes = args.sizes or [args.image_size]
    out = outputs(p, args.out or f"bench-results/e2e-{'-'.join(map(str, sizes))}.json", (".png", "-time.png"))
    torch.set_num_threads(args.threads)
    runs = [measure(args, size, config) for size in sizes for config in args.configs]
    data = {
        "benchmark": "e2e", "settings": {**{k: getattr(args, k) for k in ("model", "objects", "fps", "seconds",
                                                                          "warmup", "width", "height", "configs",
                                                                          "device", "source")},
                                         "sizes": sizes},
        "environment": environment(args.threads, args.device),
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
    }
    write_json(out, data)
    label = {id(r): f"{r['config']} {r['image_size']}px" for r in runs}
    cdf({label[id(r)]: [1000 * x for x in r["_lat"]] for r in runs},
        f"glass-to-mask at {args.fps} fps input", out.with_suffix(".png"))
    over_time({label[id(r)]: (r["_arrivals"], [1000 * x for x in r["_lat"]]) for r in runs}, "ms",
              "latency over time", out.with_name(out.stem + "-time.png"), xlabel="seconds")
    print(table([[r["image_size"], r["config"], r["glass_to_mask"]["p50_ms"], r["glass_to_mask"]["p99_ms"],
                  r["achieved_fps"], r["input_fps"] or "source's", f"{100 * r['answered_share']:.1f} %",
                  r["key_frame_fps"], r["dropped_frames"]] for r in runs],
                ["size", "config", "p50 ms", "p99 ms", "answered fps", "input fps", "answered", "key fps",
                 "dropped"]))
    print(f"wrote {out}, {out.with_suffix('.png')} and {out.with_name(out.stem + '-time.png')}")
    return data


if __name__ == "__main__":
    main()
