"""Scenario `concepts`: concept prompts' matching and lifecycles (tracker/concepts/) against a synthetic scene's
truth.

A truth detector every `--every` frames (the scene's true boxes jittered, 20 % missed, about one false box a call:
random boxes and parts of objects; seeded) and a perfect tracker (each object it holds has its true mask on every
frame): only the association and the lifecycle rules decide what is tracked (bench/concepts_truth.py). `traffic`
has objects entering, leaving and crossing each other's paths, `occlusion` one passing behind another, `crowd`
eight at once. Scored with py-motmetrics: IDF1 and identity switches of the confirmed objects (tentative ones are
flagged as such in results); duplicates, frames from an object's first detection to its confirmation, ghosts
(objects that never matched a scene object) and objects lost while the detector still saw them, counted here.

The JSON's "truth" holds these. Its "detectors" holds the real detectors' cost at seeded random weights: ms per
call, and the tracking step's p50/p99 (the model at --image-size, one object) alone and with the detector calling
beside it every --detector-every-s seconds (bench/concepts_cost.py); the goal: p99 beside <= 1.25x alone.

    samtrack bench concepts [--quick] [--sections truth detectors] [--scenes traffic occlusion crowd] [--seeds 3]
                            [--frames 720] [--every 5] [--detectors omdet-turbo ...] [--track-frames 40] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
from pathlib import Path

import motmetrics
import numpy as np
import scipy

from bench import concepts_cost
from bench.common import environment, table, write_json
from bench.concepts_truth import TruthRun, run
from bench.scenario import outputs
from pipelines.scenes import SCENES
from tracker.paths import dir_to_write

# The detectors timed by default: every one a CPU runs (sam3 needs a GPU: added on a CUDA --device).
CPU_DETECTORS = ["owlv2-base", "omdet-turbo", "grounding-dino-tiny"]
# The goals for the truth scenario: the worst scene and seed must meet each.
GOALS = {"idf1": (">=", 0.95), "id_switches": ("==", 0), "duplicates": ("==", 0), "lost_to_misses": ("==", 0)}


def summary(runs: list[TruthRun]) -> dict:
    """Every seed's numbers of one scene folded into the worst (IDF1) or the total (counts)."""
    confirm = [c for r in runs for c in r.confirm_frames]
    ghosts = [g for r in runs for g in r.ghosts]
    return {
        "idf1": min(r.idf1 for r in runs), "idf1_mean": round(float(np.mean([r.idf1 for r in runs])), 4),
        "idf1_with_tentative": min(r.idf1_with_tentative for r in runs),
        "idf1_every_frame": min(r.idf1_every_frame for r in runs), "mota": min(r.mota for r in runs),
        "id_switches": sum(r.id_switches for r in runs), "duplicates": sum(r.duplicates for r in runs),
        "frames_to_confirm": {"mean": round(float(np.mean(confirm)), 2) if confirm else None,
                              "max": max(confirm, default=None), "objects": len(confirm)},
        "unconfirmed": sum(r.unconfirmed for r in runs),
        "ghosts": {"count": len(ghosts), "confirmed": sum(r.confirmed_ghosts for r in runs),
                   "frames_lived_mean": round(float(np.mean(ghosts)), 2) if ghosts else None,
                   "frames_lived_max": max(ghosts, default=None)},
        "lost_to_misses": sum(r.lost_to_misses for r in runs),
        "longest_miss_run": max(r.longest_miss_run for r in runs),
        "events": {k: sum(r.events[k] for r in runs) for k in runs[0].events},
    }


def meets(name: str, value: float) -> bool:
    op, goal = GOALS[name]
    return value >= goal if op == ">=" else value == goal


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="samtrack bench concepts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", choices=SCENES, default=["traffic", "occlusion", "crowd"],
                   help="synthetic scenes to run the truth detector on")
    p.add_argument("--seeds", type=int, default=3, help="truth-detector seeds per scene (0, 1, ...)")
    p.add_argument("--frames", type=int, default=720, help="frames per run (traffic: a pass every 240)")
    p.add_argument("--every", type=int, default=5, help="frames between detector calls")
    p.add_argument("--width", type=int, default=640, help="frame width of the scenes (px)")
    p.add_argument("--height", type=int, default=480, help="frame height of the scenes (px)")
    p.add_argument("--sections", nargs="+", choices=["truth", "detectors"], default=["truth", "detectors"],
                   help="what to measure: the association against truth, the real detectors' cost")
    p.add_argument("--detectors", nargs="+", help="detectors to time (default: every one the device runs)")
    p.add_argument("--model", default="sam2.1_hiera_t", help="the tracker's model (seeded random weights)")
    p.add_argument("--image-size", type=int, default=512, help="the tracker's input size, and the detectors' image")
    p.add_argument("--calls", type=int, default=3, help="timed detector calls, each detector alone")
    p.add_argument("--track-frames", type=int, default=40, help="timed tracking steps per condition and detector")
    p.add_argument("--detector-every-s", type=float, default=1.0, help="seconds between detector calls beside tracking")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (pinned, recorded)")
    p.add_argument("--device", default="cpu", help="torch device of the model and detectors: cpu, cuda ...")
    p.add_argument("--out", type=dir_to_write("results directory"),
                   help="directory for concepts.json (default bench-results/)")
    p.add_argument("--quick", action="store_true", help="traffic only, one seed, 480 frames; omdet-turbo only, 2 "
                                                        "calls, 8 tracking steps per condition")
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    if args.quick:
        args.scenes, args.seeds, args.frames = ["traffic"], 1, 480
        args.detectors, args.calls, args.track_frames = args.detectors or ["omdet-turbo"], 2, 8
    for name in ("seeds", "frames", "every", "calls", "track_frames", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be 1 or more")
    if not args.detector_every_s > 0:
        p.error("--detector-every-s must be above 0")
    if args.detectors is None:
        args.detectors = CPU_DETECTORS + (["sam3"] if args.device.startswith("cuda") else [])
    out = outputs(p, str(Path(args.out or "bench-results") / "concepts.json"))
    data = {"benchmark": "concepts",
            "settings": {k: getattr(args, k) for k in ("sections", "scenes", "seeds", "frames", "every", "width",
                                                       "height")},
            "environment": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                            "motmetrics": motmetrics.__version__}}
    if "truth" in args.sections:
        data["truth"] = truth(args)
    if "detectors" in args.sections:
        import torch

        torch.set_num_threads(args.threads)
        data["environment"].update(environment(args.threads, args.device))
        data["detectors"] = concepts_cost.detectors_section(args.detectors, args.model, args.image_size, args.calls,
                                                            args.track_frames, args.detector_every_s, args.threads,
                                                            args.device)
        print(table(concepts_cost.rows(data["detectors"]), concepts_cost.HEADER))
        for name, t in data["detectors"]["tracking"].items():
            if "error" in t:
                print(f"{name}: not run beside tracking: {t['error']}")
        print("detectors meet the goal" if data["detectors"]["meets_goal"] else
              f"detectors MISS the goal: {data['detectors']['goal']}")
    write_json(out, data)
    print(f"wrote {out}")
    return data


def truth(args) -> dict:
    """The "truth" section: each scene's runs and summary, the worst over scenes, the goals; its table printed."""
    scenes = {}
    for name in args.scenes:
        print(f"{name}: {args.seeds} seed(s), {args.frames} frames, a truth-detector call every {args.every} ...",
              flush=True)
        runs = [run(name, seed, args.frames, args.every, args.width, args.height) for seed in range(args.seeds)]
        scenes[name] = {"summary": summary(runs),
                        "runs": [{k: v for k, v in dataclasses.asdict(r).items() if k not in ("confirm_frames",
                                                                                               "ghosts")}
                                 for r in runs]}
    worst = {k: (min if op == ">=" else max)(s["summary"][k] for s in scenes.values()) for k, (op, _) in GOALS.items()}
    section = {"scenes": scenes, "worst": worst, "goals": {k: f"{op} {g}" for k, (op, g) in GOALS.items()},
               "meets_goals": all(meets(k, v) for k, v in worst.items())}
    rows = []
    for name, s in scenes.items():
        m = s["summary"]
        rows.append([name, m["idf1"], m["id_switches"], m["duplicates"], m["lost_to_misses"],
                     m["frames_to_confirm"]["mean"], m["frames_to_confirm"]["max"], m["ghosts"]["count"],
                     m["ghosts"]["confirmed"], m["ghosts"]["frames_lived_mean"]])
    rows.append(["goal", ">= 0.95", "0", "0", "0", "", "", "", "", ""])
    print(table(rows, ["scene", "idf1", "id switches", "duplicates", "lost to misses", "confirm mean (frames)",
                       "confirm max", "ghosts", "confirmed ghosts", "ghost life mean"]))
    print("meets the goals" if section["meets_goals"] else
          "MISSES the goals: " + ", ".join(f"{k} {v}" for k, v in worst.items() if not meets(k, v)))
    return section


if __name__ == "__main__":
    main()
