"""What `samtrack bench gpu` keeps from each run it makes (the figures), and the goals they are held to."""

from __future__ import annotations

import operator
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

OBJECTS = ("1", "8")  # object counts of the step and vs-meta runs
PRECISIONS = ("bf16", "fp32")


@dataclass(frozen=True)
class Goal:
    """A target for one figure: `value op target` is met."""

    name: str
    unit: str
    op: str  # ">=" or "<="
    target: float


GOALS = (Goal("hiera_t@1024 px, 1 object", "fps", ">=", 250.0),
         Goal("hiera_t@1024 px, 8 objects", "fps", ">=", 100.0),
         Goal("glass-to-mask p99 at 1024 px", "ms", "<=", 8.0))
_OPS = {">=": operator.ge, "<=": operator.le}


def junit_summary(path: Path) -> dict:
    """Counts and failing tests of a pytest --junitxml file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failing = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
               if c.find("failure") is not None or c.find("error") is not None]
    skipped = [f"{c.get('classname')}::{c.get('name')}: {c.find('skipped').get('message', '')}"
               for c in root.iter("testcase") if c.find("skipped") is not None]
    return {**count, "passed": count["tests"] - count["failures"] - count["errors"] - count["skipped"],
            "failing": failing, "skipped_why": skipped}


def _fps(step: dict) -> float:
    return 1000.0 / step["mean_ms"]


def step_figures(data: dict) -> dict:
    """Per object count: frames per second (1 / mean step), p50/p99, stage p50s; batched objects beside."""
    out = {}
    for n in OBJECTS:
        r = data["results"][n]
        fig = {"fps": _fps(r["step"]), "p50_ms": r["step"]["p50_ms"], "p99_ms": r["step"]["p99_ms"],
               "stages_p50_ms": {k: v["p50_ms"] for k, v in r["stages"].items()}}
        if "batched" in r:
            b = r["batched"]["step"]
            fig["batched"] = {"fps": _fps(b), "p50_ms": b["p50_ms"], "p99_ms": b["p99_ms"]}
        out[n] = fig
    return {"precision": data["precision"], "objects": out}


def vs_meta_figures(data: dict) -> dict:
    return {n: {"ratio_median": r["ratio_median"], "meta_p50_ms": r["meta_step"]["p50_ms"],
                "samtrack_p50_ms": r["samtrack_step"]["p50_ms"], "identical_frames": r["identical_frames"],
                "compared_frames": r["compared_frames"], "iou_mean": r["iou_vs_fp32_mean"],
                "iou_min": r["iou_vs_fp32_min"]} for n, r in data["results"].items()}


def e2e_figures(data: dict) -> dict:
    return {r["config"]: {"p50_ms": r["glass_to_mask"]["p50_ms"], "p99_ms": r["glass_to_mask"]["p99_ms"],
                          "achieved_fps": r["achieved_fps"], "dropped_frames": r["dropped_frames"],
                          "input_fps": r["input_fps"]} for r in data["runs"]}


def engines_figures(data: dict) -> dict:
    return {label: {"encoder_p50_ms": r["encoder"]["p50_ms"], "step_p50_ms": r["step"]["p50_ms"],
                    "encoder_speedup_vs_torch": r["encoder_speedup_vs_torch"],
                    "step_speedup_vs_torch": r["step_speedup_vs_torch"]}
            for size in data["results"].values() for label, r in size.items()}


def streams_figures(data: dict) -> dict:
    r = data["runs"][0]
    return {"streams": r["streams"], "mode": r["mode"], "fps_per_stream": r["fps"], "fps_total": r["fps_total"],
            "p50_ms": r["glass_to_mask"].get("p50_ms"), "p99_ms": r["glass_to_mask"].get("p99_ms")}


# Run name (bench/gpu.py's plan) -> what to keep from the JSON it wrote.
READERS = {"step-bf16": step_figures, "step-fp32": step_figures, "vs-meta-bf16": vs_meta_figures,
           "vs-meta-fp32": vs_meta_figures, "e2e": e2e_figures, "tensorrt-engines": engines_figures,
           "streams": streams_figures}


def figures(outputs: dict[str, dict]) -> dict:
    """The figures of every run that wrote its JSON (`outputs`: run name -> that JSON; tests: junit_summary)."""
    out = {name: READERS[name](data) for name, data in outputs.items() if name in READERS}
    if "tests" in outputs:
        out["tests"] = outputs["tests"]
    return out


def goal_values(figs: dict, precision: str) -> list[tuple[float | None, str]]:
    """Each goal's value and where it comes from: the step at the precision "auto" picks on this GPU (8
    objects: the faster of one at a time and batched), the fast daemon configuration's p99."""
    step = figs.get(f"step-{precision}", {}).get("objects", {})
    one = step.get("1")
    values: list[tuple[float | None, str]] = [(one["fps"] if one else None, f"bench step, {precision}")]
    eight = step.get("8")
    if eight is None:
        values.append((None, f"bench step, {precision}"))
    else:
        modes = [(eight["fps"], "one at a time")] + ([(eight["batched"]["fps"], "batch_objects")]
                                                      if "batched" in eight else [])
        fps, mode = max(modes)
        values.append((fps, f"bench step, {precision}, {mode}"))
    fast = figs.get("e2e", {}).get("fast")
    values.append((fast["p99_ms"] if fast else None, "bench e2e, fast configuration, 30 fps source"))
    return values


def goals(figs: dict, precision: str) -> list[dict]:
    """The goals table: each goal, its value (None: its run did not finish), whether it is met."""
    rows = []
    for goal, (value, source) in zip(GOALS, goal_values(figs, precision), strict=True):
        met = None if value is None else bool(_OPS[goal.op](value, goal.target))
        rows.append({"goal": goal.name, "target": f"{goal.op} {goal.target:g} {goal.unit}", "value": value,
                     "unit": goal.unit, "met": met, "source": source})
    return rows


def goals_rows(rows: list[dict]) -> list[list]:
    """The goals as table rows for bench.common.table."""
    return [[r["goal"], "-" if r["value"] is None else f"{r['value']:.1f} {r['unit']}", r["target"],
             {True: "yes", False: "NO", None: "not measured"}[r["met"]], r["source"]] for r in rows]
