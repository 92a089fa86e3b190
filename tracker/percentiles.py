"""Percentiles of a series of durations: one summary for the daemon's stats, the CLI and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Percentiles:
    """p50/p95/p99/max and mean of a series, in the series' unit, with its size."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


def percentiles(values) -> Percentiles:
    """The summary of a non-empty series of numbers."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise ValueError("percentiles of an empty series")
    p50, p95, p99 = (float(x) for x in np.percentile(a, [50, 95, 99]))
    return Percentiles(int(a.size), p50, p95, p99, float(a.max()), float(a.mean()))
