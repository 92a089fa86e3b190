"""`samtrack bench gpu` as far as a machine without a GPU can take it: its arguments, its refusal without CUDA,
its plan (each run's flags accepted by its scenario, run here on the CPU at toy sizes), and the JSON and goals
table made from recorded figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu
from bench.gpu_report import figures, goals, junit_summary

NO_CUDA_HERE = not torch.cuda.is_available()


def test_arguments_and_their_defaults():
    a = gpu.parser().parse_args([])
    assert (a.device, a.model, a.out, a.budget_s) == ("cuda", "sam2.1_hiera_t", "bench-results/gpu.json", 470.0)
    b = gpu.parser().parse_args(["--device", "cuda:1", "--out", "x/y.json", "--budget-s", "300"])
    assert (b.device, b.out, b.budget_s) == ("cuda:1", "x/y.json", 300.0)


@pytest.mark.skipif(not NO_CUDA_HERE, reason="checks a machine without a usable CUDA device")
@pytest.mark.parametrize("device, says", [("cuda", "no NVIDIA driver is loaded"), ("cpu", "is not a CUDA device")])
def test_without_cuda_it_says_so_and_exits_2(tmp_path, device, says):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "bench", "gpu", "--device", device, "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("samtrack bench gpu: nothing to measure: ") and says in r.stderr, r.stderr
    assert not out.exists() and not out.with_suffix("").exists()


def _options(argv: list[str]) -> dict[str, list[str]]:
    """Each flag of a command line with the values after it."""
    out: dict[str, list[str]] = {}
    key = None
    for a in argv:
        if a.startswith("--"):
            key = a
            out[key] = []
        elif key is not None:
            out[key].append(a)
    return out


def test_plan_measures_what_the_goals_need_on_the_chosen_device(tmp_path):
    args = gpu.parser().parse_args(["--device", "cuda:1"])
    names = [r.name for r in gpu.plan(args, tmp_path, tensorrt=False)]
    assert names == ["tests", "step-bf16", "step-fp32", "vs-meta-bf16", "vs-meta-fp32", "e2e", "streams"]
    runs = {r.name: r for r in gpu.plan(args, tmp_path, tensorrt=True)}
    assert list(runs)[-2:] == ["tensorrt-export", "tensorrt-engines"]
    tests = runs["tests"].argv
    assert tests[1:5] == ["-m", "pytest", "-m", "gpu"]
    files = {Path(f).name for f in tests if f.endswith(".py")}
    assert {"test_engines.py", "test_fast_path.py", "test_gpu.py"} <= files and "test_viewer.py" not in files
    for name, run in runs.items():
        opts = _options(run.argv)
        if name != "tests":
            assert opts["--device"] == ["cuda:1"], name
        if run.out is not None and name != "tests":
            assert opts["--out"] == [str(run.out)] and run.out.parent == tmp_path, name
    for p in ("bf16", "fp32"):
        for kind in ("step", "vs-meta"):
            opts = _options(runs[f"{kind}-{p}"].argv)
            assert opts["--image-size"] == ["1024"] and opts["--objects"] == ["1", "8"] and opts["--precision"] == [p]
    e2e = _options(runs["e2e"].argv)
    assert e2e["--sizes"] == ["1024"] and e2e["--fps"] == ["30"] and "fast" in e2e["--configs"]
    streams = _options(runs["streams"].argv)
    assert streams["--streams"] == ["2"] and streams["--modes"] == ["one daemon, batched"]
    export = _options(runs["tensorrt-export"].argv)
    assert export["--backend"] == ["tensorrt"] and export["--engine-cache"] == _options(
        runs["tensorrt-engines"].argv)["--engine-cache"]


# Values put in place of the plan's so that each run finishes in seconds on this CPU.
TOY = {"--device": ["cpu"], "--image-size": ["64"], "--sizes": ["64"], "--frames": ["2"], "--warmup": ["2"],
       "--seconds": ["3"], "--warmup-s": ["2"], "--width": ["160"], "--height": ["120"]}


def _toy(argv: list[str]) -> list[str]:
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        out.append(a)
        if a in TOY:
            out += TOY[a]
            skip = len(_options(argv)[a])
    return out


@pytest.mark.slow  # about three minutes: every benchmark of the plan, each at a toy size on the CPU
def test_every_benchmark_of_the_plan_accepts_its_flags_and_writes_what_the_report_reads(tmp_path):
    args = gpu.parser().parse_args(["--device", "cuda:1"])
    outputs = {}
    for run in gpu.plan(args, tmp_path, tensorrt=False):
        if run.name == "tests":
            continue
        r = subprocess.run(_toy(run.argv), capture_output=True, text=True, timeout=300, cwd=gpu.ROOT)
        assert r.returncode == 0, (run.name, r.stderr[-3000:])
        outputs[run.name] = json.loads(run.out.read_text())
    figs = figures(outputs)
    assert set(figs) == {"step-bf16", "step-fp32", "vs-meta-bf16", "vs-meta-fp32", "e2e", "streams"}
    for row in goals(figs, "bf16"):
        assert row["value"] is not None and row["met"] in (True, False), row


def _step(mean_1: float, mean_8: float, batched_8: float, precision: str) -> dict:
    """A recorded `bench step` JSON (the parts the report reads)."""
    def stats(mean):
        return {"n": 30, "p50_ms": mean - 0.1, "p95_ms": mean + 0.5, "p99_ms": mean + 1.0, "max_ms": mean + 2,
                "mean_ms": mean}
    stages = {s: stats(1.0) for s in ("preprocess", "encoder", "track", "memory_encoder", "bookkeeping",
                                      "postprocess")}
    return {"benchmark": "step", "precision": precision, "results": {
        "1": {"step": stats(mean_1), "stages": stages},
        "8": {"step": stats(mean_8), "stages": stages, "batched": {"step": stats(batched_8)}}}}


RECORDED = {
    "step-bf16": _step(3.2, 12.5, 8.0, "bf16"),
    "step-fp32": _step(6.0, 25.0, 20.0, "fp32"),
    "e2e": {"runs": [{"config": "fast", "glass_to_mask": {"p50_ms": 6.1, "p99_ms": 9.5}, "achieved_fps": 29.9,
                      "dropped_frames": 0, "input_fps": 30},
                     {"config": "exact", "glass_to_mask": {"p50_ms": 9.0, "p99_ms": 14.0}, "achieved_fps": 29.8,
                      "dropped_frames": 1, "input_fps": 30}]},
}
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1"
skipped="1" tests="4"><testcase classname="tests.test_gpu" name="test_a"/><testcase classname="tests.test_gpu"
name="test_b"><failure message="boom">trace</failure></testcase><testcase classname="tests.test_engines"
name="test_trt"><skipped message="no tensorrt"/></testcase><testcase classname="tests.test_gpu" name="test_c"/>
</testsuite></testsuites>"""


def test_json_and_goals_table_from_recorded_figures(tmp_path):
    (tmp_path / "tests.xml").write_text(JUNIT)
    outputs = {**RECORDED, "tests": junit_summary(tmp_path / "tests.xml")}
    env = {"gpu": "NVIDIA H100", "device": "cuda:0", "gpu_capability": "9.0", "nvidia_driver": "580.65.06",
           "cuda": "13.0", "torch": "2.14.1", "auto_precision": "bf16"}
    ended = {"tests": {"status": "failed", "seconds": 40.0}, "e2e": {"status": "ok", "seconds": 70.0},
             "streams": {"status": "skipped", "why": "budget spent"}}
    data = gpu.assemble(gpu.parser().parse_args([]), env, ended, outputs, 123.45)
    assert json.loads(json.dumps(data)) == data and data["wall_s"] == 123.5  # one JSON-clean document
    t = data["figures"]["tests"]
    assert (t["tests"], t["passed"], t["failures"], t["skipped"]) == (4, 2, 1, 1)
    assert t["failing"] == ["tests.test_gpu::test_b"]
    assert t["skipped_why"] == ["tests.test_engines::test_trt: no tensorrt"]
    one, eight, p99 = data["goals"]
    assert one["value"] == pytest.approx(1000 / 3.2) and one["met"] is True and one["source"] == "bench step, bf16"
    assert eight["value"] == pytest.approx(125.0) and eight["met"] is True and "batch_objects" in eight["source"]
    assert p99["value"] == 9.5 and p99["met"] is False
    text = gpu.summary(data)
    for words in ("NVIDIA H100 (cuda:0, compute capability 9.0), driver 580.65.06", "precision auto -> bf16",
                  "CUDA tests: 2 passed, 1 failed, 1 skipped", "FAILED tests.test_gpu::test_b",
                  "hiera_t@1024 px, 1 object", "312.5 fps", ">= 250 fps", "glass-to-mask p99 at 1024 px", "9.5 ms",
                  "NO"):
        assert words in text, (words, text)
    # "auto" picking fp32 (a GPU without native bf16) judges the fp32 figures; a run that wrote nothing is shown
    old = goals(figures({"step-fp32": RECORDED["step-fp32"]}), "fp32")
    assert [r["met"] for r in old] == [False, False, None] and old[1]["value"] == pytest.approx(50.0)
    assert "not measured" in gpu.summary({**data, "goals": old})
