"""Scenario `motion`: how well masks carried between key frames match the truth, and what carrying costs.

SAM 2's masks mean nothing with random weights, so the key frame's mask is the scene's true mask
(pipelines/scenes.py: textured scenes whose every object's mask is known on every frame); it is carried 1..N frames
by the daemon's own code (tracker/motion/) and compared with the true mask of each frame (IoU, by age in frames).
Two references are measured beside it on the same frames: the mask left where it was ("still") and a dense
optical flow (OpenCV's DIS, ULTRAFAST preset) chained frame to frame ("dense"). The cost is one frame's carrying
(point tracking, fits, moved masks) with the eight objects of `crowd`, on one core.

    samtrack bench motion [--quick] [--ages 15] [--keys 12] [--methods carried still dense] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import environment, table, write_json
from bench.plots import panels
from bench.scenario import outputs
from pipelines.scenes import WHOLE_SCENES, Scene
from tracker.core.results import FrameResult, ObjectResult
from tracker.motion.carrier import Carrier
from tracker.motion.warp import box_of
from tracker.paths import dir_to_write

KEY_SPACING = 7  # frames between the key frames measured: each starts a carry of its own over fresh motion


def truth(scene: Scene, i: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    f = scene.frame(i)
    return f.image, f.masks


def as_result(frame: int, masks: dict[int, np.ndarray]) -> FrameResult:
    """True masks as a model result (objects present)."""
    return FrameResult(frame, {i: ObjectResult(i, 10.0, box_of(m), int(m.sum()), np.packbits(m.reshape(-1)),
                                               m.shape[0], m.shape[1], None) for i, m in masks.items()})


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def carried(scene: Scene, key: int, ages: int) -> tuple[list[dict[int, np.ndarray]], list[float]]:
    """The key frame's true masks carried by tracker/motion/ to each later frame; the seconds each frame took."""
    image, masks = truth(scene, key)
    c = Carrier(scene.width, scene.height)
    c.add(key, 0, image)
    c.seed(as_result(key, masks))
    out, cost = [], []
    for a in range(1, ages + 1):
        image, _ = truth(scene, key + a)
        t0 = time.perf_counter()
        c.add(key + a, 0, image)
        r = c.carry()
        cost.append(time.perf_counter() - t0)
        out.append({i: o.mask for i, o in r.objects.items()})
    return out, cost


def still(scene: Scene, key: int, ages: int) -> list[dict[int, np.ndarray]]:
    return [truth(scene, key)[1]] * ages


def dense(scene: Scene, key: int, ages: int) -> list[dict[int, np.ndarray]]:
    """Each mask pulled along DIS flow from every frame to the one before (chained)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    image, masks = truth(scene, key)
    prev = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    current = {i: m.astype(np.float32) for i, m in masks.items()}
    yy, xx = np.mgrid[0:scene.height, 0:scene.width].astype(np.float32)
    out = []
    for a in range(1, ages + 1):
        grey = cv2.cvtColor(truth(scene, key + a)[0], cv2.COLOR_RGB2GRAY)
        flow = dis.calc(grey, prev, None)
        current = {i: cv2.remap(m, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR) for i, m in current.items()}
        out.append({i: m > 0.5 for i, m in current.items()})
        prev = grey
    return out


def measure(name: str, methods: list[str], ages: int, keys: int, width: int, height: int) -> tuple[dict, list]:
    scene = Scene(name, width, height)
    by_age = {m: {a: [] for a in range(1, ages + 1)} for m in methods}
    costs: list[float] = []
    for k in range(keys):
        key = k * KEY_SPACING
        truths = [truth(scene, key + a)[1] for a in range(1, ages + 1)]
        for m in methods:
            if m == "carried":
                moved, cost = carried(scene, key, ages)
                costs += cost
            else:
                moved = still(scene, key, ages) if m == "still" else dense(scene, key, ages)
            for a, (got, true) in enumerate(zip(moved, truths, strict=True), start=1):
                by_age[m][a] += [iou(got[i], true[i]) for i in true]
    report = {m: {"iou_by_age": {str(a): round(float(np.mean(v)), 4) for a, v in ages_.items()},
                  "min_by_age": {str(a): round(float(np.min(v)), 4) for a, v in ages_.items()}}
              for m, ages_ in by_age.items()}
    return report, costs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="samtrack bench motion", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ages", type=int, default=15, help="frames each key frame's masks are carried")
    p.add_argument("--keys", type=int, default=12, help=f"key frames per scene, {KEY_SPACING} frames apart")
    p.add_argument("--scenes", nargs="+", choices=WHOLE_SCENES, default=list(WHOLE_SCENES),
                   help="scenes to carry masks in (those whose objects stay in the frame)")
    p.add_argument("--methods", nargs="+", choices=("carried", "still", "dense"), default=["carried", "still", "dense"],
                   help="carried: samtrack's (tracker/motion/); still: the mask not moved; dense: DIS flow chained")
    p.add_argument("--width", type=int, default=640, help="frame width of the scenes (px)")
    p.add_argument("--height", type=int, default=480, help="frame height of the scenes (px)")
    p.add_argument("--out", type=dir_to_write("results directory"),
                   help="directory for motion.json and motion.png (default bench-results/)")
    p.add_argument("--quick", action="store_true", help="4 key frames per scene")
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    if args.quick:
        args.keys = 4
    cv2.setNumThreads(1)  # the daemon's motion thread runs on one core
    out = outputs(p, str(Path(args.out or "bench-results") / "motion.json"), (".png",))
    scenes, cost = {}, []
    for name in args.scenes:
        print(f"{name}: carrying {args.keys} key frames {args.ages} frames each ...", flush=True)
        scenes[name], c = measure(name, args.methods, args.ages, args.keys, args.width, args.height)
        if name == "crowd":
            cost = c
    main_method = args.methods[0]
    data = {"benchmark": "motion", "settings": {k: getattr(args, k) for k in ("ages", "keys", "methods", "width",
                                                                            "height")},
            "environment": environment(1),
            "scenes": {n: {"iou_by_age": r[main_method]["iou_by_age"], "min_by_age": r[main_method]["min_by_age"],
                           "methods": r} for n, r in scenes.items()}}
    if cost:
        ms = np.asarray(cost) * 1000
        data["cost_ms_8_objects"] = {"p50": round(float(np.percentile(ms, 50)), 3),
                                     "p95": round(float(np.percentile(ms, 95)), 3),
                                     "max": round(float(ms.max()), 3), "n": int(ms.size)}
    write_json(out, data)
    panels([(f"{n}: mean IoU with the true mask", "IoU",
             {m: ([int(a) for a in r[m]["iou_by_age"]], list(r[m]["iou_by_age"].values())) for m in r})
            for n, r in scenes.items()], out.with_suffix(".png"), xlabel="frames after the key frame")
    ages = [a for a in ("1", "2", "5", "10", "15") if int(a) <= args.ages]
    print(table([[n, m, *[r[m]["iou_by_age"][a] for a in ages], r[m]["min_by_age"][str(args.ages)]]
                 for n, r in scenes.items() for m in r], ["scene", "method", *[f"age {a}" for a in ages],
                                                          f"min at {args.ages}"]))
    if cost:
        c = data["cost_ms_8_objects"]
        print(f"carrying 8 objects ({args.width}x{args.height}, one core): p50 {c['p50']} ms, p95 {c['p95']} ms")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


if __name__ == "__main__":
    main()
