"""Scenario `gpu`: the first thing to run on a machine with a CUDA GPU, one command, under 8 minutes.

It runs, each as its own process with its own JSON: the CUDA tests (`pytest -m gpu`), `bench step` and
`bench vs-meta` at 1024 px (1 and 8 objects, bf16 and fp32), `bench e2e` at 1024 px on a 30 fps test source,
the TensorRT export and the engines' step (where TensorRT is installed), and two streams batched in one
daemon. It writes one JSON (the GPU, driver, CUDA and torch; every figure; how each run ended) and prints
the goals table. Without a usable CUDA device it says why and exits 2.

    samtrack bench gpu [--device cuda:0] [--out bench-results/gpu.json] [--budget-s 470]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import environment, table, write_json
from bench.gpu_report import figures, goals, goals_rows, junit_summary
from bench.scenario import JSON_OUT, outputs

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 470.0  # the whole run, under the 8 minutes asked for, with room to gather the figures
MIN_RUN_S = 20.0  # a run with less budget left than this is skipped, not started to be killed
STOP_GRACE_S = 10.0  # after SIGTERM to a run over its time, before SIGKILL


@dataclass(frozen=True)
class Run:
    """One process of the plan and the file it leaves."""

    name: str
    argv: list[str]
    timeout_s: float  # its own limit; the budget left may cut it shorter
    out: Path | None  # its JSON (tests: JUnit XML); None: nothing to read


def gpu_test_files(tests: Path = ROOT / "tests") -> list[str]:
    """The test files holding CUDA tests (collecting only those keeps the others' imports out)."""
    return sorted(str(p) for p in tests.glob("test_*.py") if "pytest.mark.gpu" in p.read_text())


def plan(args, out_dir: Path, tensorrt: bool) -> list[Run]:
    """What to run, in order: the tests first (do the CUDA paths work?), the goals' benchmarks, then the
    rest, TensorRT's plan build (minutes) last."""
    bench = [sys.executable, "-m", "tracker.cli", "bench"]
    on = ["--device", args.device, "--model", args.model]
    runs = [Run("tests", [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                          f"--junitxml={out_dir / 'tests.xml'}", *gpu_test_files()], 150, out_dir / "tests.xml")]
    for p in ("bf16", "fp32"):
        runs.append(Run(f"step-{p}", [*bench, "step", *on, "--image-size", "1024", "--objects", "1", "8",
                                      "--precision", p, "--batch", "both", "--frames", "30", "--warmup", "5",
                                      "--out", str(out_dir / f"step-{p}.json")], 120, out_dir / f"step-{p}.json"))
    for p in ("bf16", "fp32"):
        runs.append(Run(f"vs-meta-{p}", [*bench, "vs-meta", *on, "--image-size", "1024", "--objects", "1", "8",
                                         "--precision", p, "--frames", "16", "--warmup", "3",
                                         "--out", str(out_dir / f"vs-meta-{p}.json")], 120,
                        out_dir / f"vs-meta-{p}.json"))
    runs.append(Run("e2e", [*bench, "e2e", *on, "--sizes", "1024", "--fps", "30", "--width", "1280", "--height",
                            "720", "--seconds", "20", "--warmup", "30", "--configs", "fast", "exact",
                            "--out", str(out_dir / "e2e.json")], 150, out_dir / "e2e.json"))
    runs.append(Run("streams", [*bench, "streams", *on, "--image-size", "1024", "--streams", "2", "--modes",
                                "one daemon, batched", "--fps", "30", "--seconds", "15", "--warmup-s", "10",
                                "--out", str(out_dir / "streams.json")], 120, out_dir / "streams.json"))
    if tensorrt:
        cache = str(out_dir / "engines")
        runs.append(Run("tensorrt-export", [sys.executable, "-m", "tracker.cli", "export", "--backend", "tensorrt",
                                            "--precision", "fp16", "--image-size", "1024", "--model", args.model,
                                            "--device", args.device, "--engine-cache", cache], 300, None))
        runs.append(Run("tensorrt-engines", [*bench, "engines", *on, "--sizes", "1024", "--backends", "torch-bf16",
                                             "tensorrt-fp16", "--iters", "10", "--warmup", "3",
                                             "--engine-cache", cache, "--out", str(out_dir / "engines.json")],
                        120, out_dir / "engines.json"))
    return runs


def execute(run: Run, deadline: float, log_dir: Path) -> dict:
    """Run one process (in its own process group, so a run over its time is stopped with its daemons)."""
    if run.out is not None:
        run.out.unlink(missing_ok=True)  # an earlier run's file is never read as this one's
    left = deadline - time.monotonic()
    if left < MIN_RUN_S:
        return {"status": "skipped", "why": f"budget spent ({left:.0f} s left)"}
    log = log_dir / f"{run.name}.log"
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(run.argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=min(run.timeout_s, left))
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            code, status = proc.returncode, "timeout"
    tail = log.read_text(errors="replace").splitlines()[-5:]
    return {"status": status, "returncode": code, "seconds": round(time.monotonic() - t0, 1), "log": str(log),
            "last_lines": tail}


def _read(run: Run) -> dict | None:
    if run.out is None or not run.out.is_file():
        return None
    try:
        return junit_summary(run.out) if run.out.suffix == ".xml" else json.loads(run.out.read_text())
    except (ValueError, OSError):
        return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="samtrack bench gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="the CUDA device to measure: cuda, cuda:1 ...")
    p.add_argument("--model", default="sam2.1_hiera_t", help="the goals are for hiera_t")
    p.add_argument("--out", type=JSON_OUT, default="bench-results/gpu.json",
                   help="the JSON; each run's files go in a folder beside it, named as it without .json")
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="time for the whole run")
    return p


def machine(args) -> dict:
    """The GPU, driver, CUDA, torch and TensorRT the figures were measured with."""
    import importlib.metadata as md

    import torch

    from engines.tensorrt_backend import tensorrt_available
    from tracker.core.precision import resolve_precision

    dev = torch.device(args.device)
    env = environment(os.cpu_count() or 1, args.device)
    cap = torch.cuda.get_device_capability(dev)
    why = tensorrt_available()
    if why is None:
        import tensorrt

        why = tensorrt.__version__
    return {**env, "device": str(dev), "gpu_capability": f"{cap[0]}.{cap[1]}",
            "gpu_memory_bytes": torch.cuda.get_device_properties(dev).total_memory, "sam2": md.version("sam2"),
            "tensorrt": why,
            "auto_precision": resolve_precision("auto", dev)}


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out, dirs=("",))  # the results and the folder of each run's files, checked first
    from engines.tensorrt_backend import tensorrt_available
    from tracker.devices import check_device
    from tracker.errors import DeviceError

    try:
        if check_device(args.device).type != "cuda":
            raise DeviceError(f"--device {args.device} is not a CUDA device")
    except DeviceError as e:
        print(f"samtrack bench gpu: nothing to measure: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    t_start = time.monotonic()
    out_dir = out.with_suffix("")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = machine(args)
    runs = plan(args, out_dir, tensorrt=tensorrt_available() is None)
    deadline = t_start + args.budget_s
    ended, collected = {}, {}
    for run in runs:
        print(f"[{time.monotonic() - t_start:5.0f} s] {run.name} ...", flush=True)
        ended[run.name] = execute(run, deadline, out_dir)
        print(f"[{time.monotonic() - t_start:5.0f} s] {run.name}: {ended[run.name]['status']}", flush=True)
        data = _read(run)
        if data is not None:
            collected[run.name] = data
    data = assemble(args, env, ended, collected, time.monotonic() - t_start)
    write_json(out, data)
    print(summary(data))
    print(f"wrote {out} (each run's JSON and log in {out_dir}/)")
    return data


def assemble(args, env: dict, ended: dict, outputs: dict, wall_s: float) -> dict:
    """The one JSON: the machine, how each run ended, the figures of those that wrote theirs, the goals."""
    figs = figures(outputs)
    return {"benchmark": "gpu", "settings": vars(args), "environment": env, "runs": ended, "figures": figs,
            "goals": goals(figs, env["auto_precision"]), "wall_s": round(wall_s, 1)}


def summary(data: dict) -> str:
    """What `bench gpu` prints: the machine, the runs, the tests, the goals table."""
    env, figs = data["environment"], data["figures"]
    lines = [f"{env['gpu']} ({env['device']}, compute capability {env['gpu_capability']}), driver "
             f"{env['nvidia_driver']}, CUDA {env['cuda']}, torch {env['torch']}; precision auto -> "
             f"{env['auto_precision']}",
             table([[name, r["status"], r.get("seconds", "-")] for name, r in data["runs"].items()],
                   ["run", "status", "seconds"])]
    if "tests" in figs:
        t = figs["tests"]
        lines.append(f"CUDA tests: {t['passed']} passed, {t['failures'] + t['errors']} failed, {t['skipped']} "
                     f"skipped" + "".join(f"\n  FAILED {name}" for name in t["failing"]))
    lines.append(table(goals_rows(data["goals"]), ["goal", "value", "target", "met", "from"]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
