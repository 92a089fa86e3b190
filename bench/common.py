"""Helpers shared by the benchmarks: environment record, percentiles, JSON output, table printing, progress
lines."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from tracker.percentiles import percentiles as summarize


def environment(threads: int, device: str = "cpu") -> dict:
    """What the numbers depend on, recorded next to them (the GPU: `device`'s, where CUDA runs)."""
    import torch

    from tracker.devices import nvidia_driver

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(_gpu(device)) if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "nvidia_driver": nvidia_driver(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
    }


def _gpu(device: str):
    """The CUDA device a benchmark on `device` names: that one, or cuda:0 for a CPU run."""
    import torch

    dev = torch.device(device)
    return dev if dev.type == "cuda" else torch.device("cuda", 0)


class Progress:
    """One line on stderr per phase of a long run, with the time since it started: a benchmark that measures for
    minutes says what it is doing."""

    def __init__(self, scenario: str):
        self.scenario, self.t0 = scenario, time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[bench {self.scenario} {time.monotonic() - self.t0:6.1f} s] {text}", file=sys.stderr, flush=True)


def sync(device: str) -> None:
    """Wait for a CUDA device's queued work (before reading a clock); nothing on the CPU."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def percentiles(values_s: list[float]) -> dict:
    """p50/p95/p99/max and mean of durations given in seconds, reported in milliseconds."""
    if len(values_s) == 0:
        return {"n": 0}
    p = summarize([1000.0 * v for v in values_s])
    return {"n": p.n, "p50_ms": p.p50, "p95_ms": p.p95, "p99_ms": p.p99, "max_ms": p.max, "mean_ms": p.mean}


def write_json(path: str | Path, data: dict) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2) + "\n")
    return p


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
