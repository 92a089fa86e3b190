"""Memory benchmark: samtrack's RSS and held bytes over a long stream, and its per-frame time
against Meta's SAM2VideoPredictor on the same frames in the same run.

    python -m bench.memory --frames 10000 --image-size 256

Phase 1 streams --frames synthetic frames through samtrack alone (one object, forced present),
sampling RSS and tracker-held bytes every --every frames. Phase 2 runs Meta's predictor and a fresh
samtrack on the same --meta-frames frames, alternating frame by frame so both see the same machine
load, and reports the median per-frame time ratio and whether every output is bit-identical.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # Meta's predictor draws a progress bar per propagate call

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import environment, percentiles, table, write_json  # noqa: E402
from bench.scenario import JSON_OUT, outputs  # noqa: E402
from pipelines.synthetic import box_of_first_shape, moving_shapes_frame  # noqa: E402
from tracker import Tracker  # noqa: E402
from tracker.cli.args import image_size  # noqa: E402
from tracker.models import seeded_model  # noqa: E402

FRAME_W, FRAME_H = 320, 240  # synthetic stream size (a small camera)
N_DISTINCT = 200  # distinct synthetic frames; the stream cycles through them (generation stays cheap)


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def _model(args):
    # Random weights: objects forced present (unless --absent) so every memory path runs.
    return seeded_model(args.model, image_size=args.image_size, seed=args.seed, present=not args.absent)


def phase_stream(args, model, frames) -> dict:
    """samtrack alone over args.frames frames: RSS and held bytes every args.every frames."""
    tracker = Tracker.from_sam2(model, precision=args.precision)
    samples, times = [], []
    for i in range(args.frames):
        f = frames[i % len(frames)]
        t0 = time.perf_counter()
        tracker.step(f)
        if i == 0:
            tracker.add_box(1, box_of_first_shape(0, FRAME_H, FRAME_W))
        times.append(time.perf_counter() - t0)
        if i % args.every == 0 or i == args.frames - 1:
            gc.collect()
            samples.append({"frame": i, "rss_bytes": rss_bytes(), "held_bytes": tracker.held_bytes(),
                            "tensors": len(tracker.tensors())})
            if not args.quiet:
                s = samples[-1]
                print(f"  frame {i:6d}  rss {s['rss_bytes'] / 2**20:8.1f} MiB  held {s['held_bytes'] / 2**20:7.2f} MiB"
                      f"  median {1000 * statistics.median(times[-args.every:]):6.1f} ms/frame", flush=True)
    after = [s for s in samples if s["frame"] >= args.warmup] or samples[-1:]
    growth = (after[-1]["rss_bytes"] - after[0]["rss_bytes"]) / after[0]["rss_bytes"]
    return {
        "samples": samples,
        "step": percentiles(times[args.warmup:] or times),
        "rss_growth_after_warmup": growth,
        "held_bytes_constant_after_warmup": len({s["held_bytes"] for s in after}) == 1,
    }


def phase_vs_meta(args, model, frames) -> dict:
    """Meta's predictor and samtrack on the same frames, interleaved: per-frame time ratio and exactness."""
    n = min(args.meta_frames, args.frames)
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            Image.fromarray(frames[i % len(frames)]).save(f"{d}/{i:06d}.jpg", quality=95)
        decoded = [np.array(Image.open(f"{d}/{i:06d}.jpg").convert("RGB")) for i in range(n)]
        rss0 = rss_bytes()
        state = model.init_state(d)
    box = np.array(box_of_first_shape(0, FRAME_H, FRAME_W), np.float32)
    model.add_new_points_or_box(state, 0, 1, box=box)
    tracker = Tracker.from_sam2(model, precision="fp32")  # Meta's arithmetic: frames compared bit for bit
    tracker.step(decoded[0])
    tracker.add_box(1, box)
    meta = model.propagate_in_video(state, start_frame_idx=1)
    meta_t, ours_t, identical = [], [], 0
    for i in range(1, n):
        t0 = time.perf_counter()
        fi, _, masks = next(meta)
        t1 = time.perf_counter()
        res = tracker.step(decoded[i])
        t2 = time.perf_counter()
        assert fi == i
        meta_t.append(t1 - t0)
        ours_t.append(t2 - t1)
        identical += torch.equal(torch.from_numpy(res.objects[1].logits), masks[0, 0])
    meta.close()
    rss_meta = rss_bytes() - rss0
    ratios = [o / m for o, m in zip(ours_t, meta_t)]
    warm = slice(min(args.warmup, len(ratios) // 2), None)
    del state
    gc.collect()
    return {
        "frames": n,
        "meta_step": percentiles(meta_t[warm]),
        "samtrack_step": percentiles(ours_t[warm]),
        "ratio_median": statistics.median(ratios[warm]),
        "ratio_of_medians": statistics.median(ours_t[warm]) / statistics.median(meta_t[warm]),
        "identical_frames": identical,
        "compared_frames": n - 1,
        "meta_rss_growth_bytes": rss_meta,
        "meta_rss_per_frame_bytes": rss_meta / n,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="samtrack bench memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=10000, help="frames streamed through samtrack")
    p.add_argument("--image-size", type=image_size, default=256, help="model input size")
    p.add_argument("--model", default="sam2.1_hiera_t", help="model name (see `samtrack weights list`)")
    p.add_argument("--every", type=int, default=500, help="sample RSS every N frames")
    p.add_argument("--warmup", type=int, default=500, help="frames excluded from growth and timing stats")
    p.add_argument("--meta-frames", type=int, default=1000,
                   help="frames for Meta's predictor (it preloads them all and keeps every output)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (pinned, recorded)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--absent", action="store_true", help="keep random weights' absent objects")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="arithmetic of the streaming phase (the Meta comparison always runs fp32)")
    p.add_argument("--out", type=JSON_OUT, help="JSON path (default bench-results/memory-<model>-<size>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out or f"bench-results/memory-{args.model}-{args.image_size}.json")
    torch.set_num_threads(args.threads)
    frames = [moving_shapes_frame(i, FRAME_H, FRAME_W) for i in range(N_DISTINCT)]
    model = _model(args)
    print(f"samtrack alone: {args.frames} frames at {args.image_size}px", flush=True)
    stream = phase_stream(args, model, frames)
    print(f"samtrack vs Meta: {min(args.meta_frames, args.frames)} frames, interleaved", flush=True)
    vs = phase_vs_meta(args, model, frames)
    result = {
        "benchmark": "memory",
        "settings": {k: getattr(args, k) for k in ("frames", "image_size", "model", "every", "warmup",
                                                    "meta_frames", "seed", "absent")},
        "environment": environment(args.threads),
        "samtrack": stream,
        "vs_meta": vs,
    }
    write_json(out, result)
    s = stream["samples"]
    print(table([[x["frame"], x["rss_bytes"] / 2**20, x["held_bytes"] / 2**20, x["tensors"]] for x in s],
                ["frame", "rss MiB", "held MiB", "tensors"]))
    print(table([
        ["samtrack RSS growth after warm-up", f"{100 * stream['rss_growth_after_warmup']:.2f} %"],
        ["samtrack held bytes constant", stream["held_bytes_constant_after_warmup"]],
        ["Meta RSS per frame", f"{vs['meta_rss_per_frame_bytes'] / 2**10:.1f} KiB"],
        ["per-frame time samtrack / Meta (median)", f"{vs['ratio_median']:.3f}"],
        ["samtrack p50 / Meta p50 (ms)", f"{vs['samtrack_step']['p50_ms']:.1f} / {vs['meta_step']['p50_ms']:.1f}"],
        ["bit-identical frames", f"{vs['identical_frames']} / {vs['compared_frames']}"],
    ], ["measure", "value"]))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
