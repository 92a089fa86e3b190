"""Scenario `step`: the tracker alone, per stage, for 1, 2, 4 and 8 objects, with objects tracked
one at a time (Meta-exact) and in one batch (TrackerOptions.batch_objects), interleaved.

    samtrack bench step [--quick] [--batch off|on|both] [--source FILE|RECORDING]   (or python -m bench.step)
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from bench.common import environment, percentiles, sync, table, write_json
from bench.flops import Peak, count_step, cpu_peak
from bench.plots import cdf
from bench.scenario import add_engine_options, add_source_option, engines_of, object_boxes, outputs, scenario_parser
from pipelines.synthetic import moving_shapes_frame
from tracker import Tracker
from tracker.core.options import TrackerOptions
from tracker.models import seeded_model

STAGES = ("preprocess", "encoder", "track", "memory_encoder", "bookkeeping", "postprocess")
OUTSIDE_MODEL = ("preprocess", "bookkeeping", "postprocess")  # what the step does besides the model's calls


def run(args) -> dict:
    model = seeded_model(args.model, args.image_size, device=args.device)
    engines = engines_of(model, args)  # before GStreamer
    frames = _frames(args)
    h, w = frames[0].shape[:2]
    results, series = {}, {}
    peak = cpu_peak(args.threads)
    for n in args.objects:
        modes = {"off": [False], "on": [True], "both": [False, True] if n > 1 else [False]}[args.batch]
        trackers = {b: Tracker(model, TrackerOptions.from_model(model, batch_objects=b, precision=args.precision),
                               engines) for b in modes}
        calls = {b: _count_memory_attention(t) for b, t in trackers.items()}
        for tracker in trackers.values():
            tracker.step(frames[0])
            for k, box in enumerate(object_boxes(n, w, h)):
                tracker.add_box(k + 1, box)
        totals = {b: [] for b in modes}
        stages = {b: {s: [] for s in STAGES} for b in modes}
        first = {}
        for i in range(1, 1 + args.warmup + args.frames):
            frame = frames[i]
            if i == 1 + args.warmup:  # calls are counted over the measured frames only
                for c in calls.values():
                    c.clear()
            for b in (modes if i % 2 else modes[::-1]):  # interleaved: both modes see the same machine state
                sync(args.device)  # on CUDA the step's time ends when its GPU work does
                t0 = time.perf_counter()
                res = trackers[b].step(frame)
                sync(args.device)
                dt = time.perf_counter() - t0
                if i == 1:
                    first[b] = dt  # the first frame pays for allocation and caches: reported apart
                if i > args.warmup:
                    totals[b].append(dt)
                    for s in STAGES:
                        stages[b][s].append(getattr(res.times, s))
        main = modes[0]
        results[str(n)] = _summary(n, totals[main], stages[main], first[main], main, len(calls[main]))
        if len(modes) == 2:
            batched = _summary(n, totals[True], stages[True], first[True], True, len(calls[True]))
            batched["speedup"] = results[str(n)]["step"]["p50_ms"] / batched["step"]["p50_ms"]
            results[str(n)]["batched"] = batched
            series[f"{n} obj batched step"] = [1000 * t for t in totals[True]]
        series[f"{n} obj step"] = [1000 * t for t in totals[main]]
        results[str(n)]["work"] = _work(model, frames, object_boxes(n, w, h), results[str(n)]["stages"], peak,
                                        trackers[main].precision)
        if n == args.objects[-1]:
            series.update({f"{n} obj {s}": [1000 * t for t in v] for s, v in stages[main].items()})
    base = results[str(args.objects[0])]
    shared = base["stages"]["preprocess"]["p50_ms"] + base["stages"]["encoder"]["p50_ms"]
    per_object = {n: (r["step"]["p50_ms"] - shared) / int(n) for n, r in results.items()}
    return {"benchmark": "step", "settings": _settings(args),
            "environment": environment(args.threads, args.device), "peak": dataclasses.asdict(peak),
            "precision": trackers[modes[0]].precision, "backend": engines.name, "placement": engines.placement,
            "results": results, "shared_per_frame_ms": shared, "per_object_ms": per_object, "_series": series}


def _frames(args) -> list[np.ndarray]:
    """The frames every mode steps through: --source's first ones (decoded before timing), else moving shapes."""
    n = 1 + args.warmup + args.frames
    if args.source is None:
        return [moving_shapes_frame(i, args.height, args.width) for i in range(n)]
    from pipelines.errors import EndOfStream
    from tracker.recording.inputs import open_input

    source, frames = open_input(args.source, reconnect=False), []
    source.start()
    try:
        while len(frames) < n:
            try:
                frame = source.read(30.0)
            except EndOfStream:
                break
            if frame is None:
                raise RuntimeError(f"{args.source}: no frame within 30 s")
            frames.append(frame.image)
    finally:
        source.stop()
    if len(frames) < args.warmup + 2:
        raise SystemExit(f"{args.source} has {len(frames)} frames: --warmup {args.warmup} needs at least "
                         f"{args.warmup + 2}")
    if len(frames) < n:
        print(f"{args.source} has {len(frames)} frames: measuring {len(frames) - 1 - args.warmup}, not {args.frames}")
        args.frames = len(frames) - 1 - args.warmup
    return frames


def _work(model, frames: list[np.ndarray], boxes: list, stages: dict, peak: Peak, precision: str) -> dict:
    """Per stage: GFLOP of one step (attention included, bench/flops.py), the GFLOP/s its median time reached, and
    the share of the CPU's nominal peak at the step's arithmetic that is (a roofline: how much room is left)."""
    counted = count_step(model, frames[:10] if len(frames) >= 10 else frames, boxes)
    top = peak.bf16_gflops if precision == "bf16" else peak.fp32_gflops
    out = {}
    for stage, gflop in counted.items():
        seconds = stages[stage]["p50_ms"] / 1000
        rate = gflop / seconds if seconds > 0 else 0.0
        out[stage] = {"gflop": round(gflop, 3), "gflops": round(rate, 1), "share_of_peak": round(rate / top, 3)}
    return out


def _count_memory_attention(tracker: Tracker) -> list[int]:
    """A list that grows by one per memory-attention call of this tracker (what batching changes: one call per
    frame for all objects instead of one per object)."""
    calls: list[int] = []
    attend = tracker.memory_attention

    def counted(*a, **k):
        calls.append(1)
        return attend(*a, **k)

    tracker.memory_attention = counted
    return calls


def _summary(n: int, totals: list[float], stages: dict[str, list[float]], first: float, batched: bool,
             attention_calls: int) -> dict:
    outside = [sum(stages[s][i] for s in OUTSIDE_MODEL) for i in range(len(totals))]
    return {"objects": n, "batch_objects": batched, "step": percentiles(totals), "first_frame_ms": 1000 * first,
            "memory_attention_calls_per_frame": attention_calls / len(totals),
            "stages": {s: percentiles(v) for s, v in stages.items()},
            "outside_model": percentiles(outside),
            "outside_model_share": float(np.median([o / t for o, t in zip(outside, totals)])),
            "jitter_ms": float(np.std(np.asarray(totals) * 1000))}


def _settings(args) -> dict:
    return {k: getattr(args, k) for k in ("model", "image_size", "objects", "frames", "warmup", "width", "height",
                                          "batch", "precision", "backend", "openvino_parts", "device",
                                          "source")}


def parser():
    p = scenario_parser("step", __doc__, frames=20, quick_frames=8)
    p.add_argument("--batch", choices=["off", "on", "both"], default="both",
                   help="objects one at a time (off, Meta-exact), in one batch (on), or both compared")
    add_engine_options(p)
    add_source_option(p)
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out or f"bench-results/step-{args.image_size}.json", (".png",))
    torch.set_num_threads(args.threads)
    data = run(args)
    series = data.pop("_series")
    write_json(out, data)
    cdf(series, f"tracker step, {args.model} at {args.image_size}px", out.with_suffix(".png"))
    print(table([[n, r["step"]["p50_ms"], r["step"]["p95_ms"], r["step"]["p99_ms"], r["step"]["max_ms"],
                  r["stages"]["encoder"]["p50_ms"], r["stages"]["track"]["p50_ms"],
                  r["stages"]["memory_encoder"]["p50_ms"], f"{100 * r['outside_model_share']:.1f} %"]
                 for n, r in data["results"].items()],
                ["objects", "p50 ms", "p95", "p99", "max", "encoder p50", "track p50", "mem-enc p50",
                 "outside model"]))
    batched = [[n, r["step"]["p50_ms"], r["batched"]["step"]["p50_ms"], r["batched"]["speedup"]]
               for n, r in data["results"].items() if "batched" in r]
    if batched:
        print(table(batched, ["objects", "one at a time p50 ms", "batched p50 ms", "speedup"]))
    print(f"{data['backend']}, precision {data['precision']}; shared per frame {data['shared_per_frame_ms']:.1f} ms; "
          "per object: " + ", ".join(f"{n} obj {v:.1f} ms" for n, v in data["per_object_ms"].items()))
    pk = data["peak"]
    print(table([[n, stage, w["gflop"], w["gflops"], f"{100 * w['share_of_peak']:.0f} %"]
                 for n, r in data["results"].items() for stage, w in r["work"].items()],
                ["objects", "stage", "GFLOP", "GFLOP/s", "of peak"]))
    print(f"nominal peak ({pk['isa']}, {pk['cores']} cores at {pk['ghz']:.2f} GHz): {pk['fp32_gflops']:.0f} GFLOP/s "
          f"fp32, {pk['bf16_gflops']:.0f} bf16")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


if __name__ == "__main__":
    main()
