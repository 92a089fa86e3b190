"""Scenario `vs-meta`: Meta's SAM2VideoPredictor and samtrack on the same frames and prompts, in the
same run, frame by frame alternately; per-frame time ratio, the count of bit-identical frames and the
mask IoU against Meta's fp32 output (which the fp32 path reproduces exactly).

    samtrack bench vs-meta [--quick] [--objects 1 8] [--precision auto|fp32|bf16]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # Meta's predictor draws a progress bar per propagate call

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import Progress, environment, percentiles, sync, table, write_json  # noqa: E402
from bench.plots import over_time  # noqa: E402
from bench.scenario import add_engine_options, engines_of, object_boxes, outputs, scenario_parser  # noqa: E402
from pipelines.synthetic import moving_shapes_frame  # noqa: E402
from tracker import Tracker
from tracker.core.options import TrackerOptions
from tracker.models import seeded_model  # noqa: E402

MIN_VIDEO = 16  # Meta scales pointer encodings by min(video length, 16): shorter videos are not comparable
PROGRESS_EVERY = 10  # frames between progress lines: a few seconds each at 512 px on a small CPU


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def compare(model, frames: list[np.ndarray], n_objects: int, warmup: int, n_steps: int, precision: str,
            engines, progress: Progress) -> dict:
    """Track n_objects over frames 1..n_steps of `frames` (the whole video is given to Meta: its
    length changes Meta's arithmetic below 16 frames)."""
    progress(f"{n_objects} object(s): loading {len(frames)} frames into Meta's predictor")
    h, w = frames[0].shape[:2]
    boxes = object_boxes(n_objects, w, h)
    with tempfile.TemporaryDirectory() as d:
        for i, f in enumerate(frames):
            Image.fromarray(f).save(f"{d}/{i:06d}.jpg", quality=95)
        decoded = [np.array(Image.open(f"{d}/{i:06d}.jpg").convert("RGB")) for i in range(len(frames))]
        state = model.init_state(d)
    tracker = Tracker(model, TrackerOptions.from_model(model, precision=precision), engines)
    tracker.step(decoded[0])
    for k, box in enumerate(boxes):
        model.add_new_points_or_box(state, 0, k + 1, box=np.array(box, np.float32))
        tracker.add_box(k + 1, box)
    meta = model.propagate_in_video(state, start_frame_idx=1)
    meta_t, ours_t, identical, ious = [], [], 0, []
    device = str(model.device)
    progress(f"{n_objects} object(s): {n_steps} frames, Meta's predictor and samtrack alternately")
    for i in range(1, n_steps + 1):
        if i % PROGRESS_EVERY == 0:
            progress(f"{n_objects} object(s): frame {i}/{n_steps}")
        sync(device)  # on CUDA each side's time must end when its GPU work does, not when it was queued
        t0 = time.perf_counter()
        fi, ids, masks = next(meta)
        sync(device)
        t1 = time.perf_counter()
        res = tracker.step(decoded[i])
        sync(device)
        t2 = time.perf_counter()
        meta_t.append(t1 - t0)
        ours_t.append(t2 - t1)
        masks = masks.cpu()
        identical += all(torch.equal(torch.from_numpy(res.objects[o].logits), masks[k, 0]) for k, o in enumerate(ids))
        ious += [_iou(res.objects[o].mask, (masks[k, 0] > 0).numpy()) for k, o in enumerate(ids)]
    meta.close()
    ratios = [o / m for o, m in zip(ours_t, meta_t)]
    warm = slice(warmup, None)
    return {"objects": n_objects, "frames": len(frames), "meta_step": percentiles(meta_t[warm]),
            "samtrack_step": percentiles(ours_t[warm]), "ratio_median": statistics.median(ratios[warm]),
            "warmup_ratio": ratios[:warmup], "identical_frames": identical, "compared_frames": n_steps,
            "precision": tracker.precision, "backend": tracker.backend, "placement": engines.placement,
            "iou_vs_fp32_mean": float(np.mean(ious)),
            "iou_vs_fp32_min": float(np.min(ious)), "_series": (meta_t, ours_t)}


def parser():
    p = scenario_parser("vs-meta", __doc__, frames=40, quick_frames=8)
    add_engine_options(p)  # samtrack's (Meta's predictor runs its own modules in fp32)
    p.set_defaults(objects=[1, 8])
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out or f"bench-results/vs-meta-{args.image_size}.json", (".png",))
    torch.set_num_threads(args.threads)
    progress = Progress("vs-meta")
    progress(f"building {args.model} at {args.image_size} px")
    model = seeded_model(args.model, args.image_size, device=args.device)
    progress(f"engines for backend {args.backend} (a cold cache converts them first: minutes)")
    engines = engines_of(model, args)
    n = max(MIN_VIDEO + 1, args.frames + args.warmup + 1)
    frames = [moving_shapes_frame(i, args.height, args.width) for i in range(n)]
    results, series = {}, {}
    for k in args.objects:
        r = compare(model, frames, k, args.warmup, args.frames + args.warmup, args.precision, engines, progress)
        meta_t, ours_t = r.pop("_series")
        x = list(range(1, len(meta_t) + 1))
        series[f"Meta, {k} obj"] = (x, [1000 * t for t in meta_t])
        series[f"samtrack, {k} obj"] = (x, [1000 * t for t in ours_t])
        results[str(k)] = r
    data = {"benchmark": "vs-meta", "settings": {k: getattr(args, k) for k in ("model", "image_size", "objects",
                                                                               "frames", "warmup", "precision",
                                                                               "backend", "openvino_parts", "device")},
            "environment": environment(args.threads, args.device), "results": results}
    write_json(out, data)
    over_time(series, "ms per frame", f"per-frame time, {args.model} at {args.image_size}px", out.with_suffix(".png"))
    print(table([[k, f"{r['backend']} {r['precision']}", r["meta_step"]["p50_ms"], r["samtrack_step"]["p50_ms"],
                  r["ratio_median"], f"{r['identical_frames']}/{r['compared_frames']}", r["iou_vs_fp32_mean"],
                  r["iou_vs_fp32_min"]]
                 for k, r in results.items()],
                ["objects", "samtrack", "Meta p50 ms", "samtrack p50 ms", "ratio (median)", "identical",
                 "IoU vs fp32 mean", "min"]))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


if __name__ == "__main__":
    main()
