"""Daemon counters and rolling per-stage timings, reported by the `stats` command."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 1000  # recent frames kept per timing series: percentiles follow the present, memory stays flat


@dataclass
class Stats:
    """What the daemon has done since it started."""

    started: float = field(default_factory=time.monotonic)
    frames: int = 0  # frames tracked and published
    frame_errors: int = 0  # frames skipped because tracking raised
    prompts: int = 0  # prompts applied
    requests: int = 0  # command requests received
    errors: Counter = field(default_factory=Counter)  # error replies by code
    timings_ms: dict[str, deque] = field(default_factory=dict)  # stage -> recent durations (ms)
    _frame_times: deque = field(default_factory=lambda: deque(maxlen=64))

    def record_frame(self, stages_ms: dict[str, float]) -> None:
        self.frames += 1
        self._frame_times.append(time.monotonic())
        for k, v in stages_ms.items():
            self.timings_ms.setdefault(k, deque(maxlen=WINDOW)).append(v)

    @property
    def fps(self) -> float:
        t = self._frame_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def percentiles(self) -> dict[str, dict[str, float]]:
        out = {}
        for k, values in self.timings_ms.items():
            a = np.asarray(values)
            out[k] = {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
                      "p99": float(np.percentile(a, 99)), "max": float(a.max()), "n": int(a.size)}
        return out
