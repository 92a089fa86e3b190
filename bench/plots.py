"""PNG plots written next to a benchmark's JSON: latency CDFs, latency over time, RSS over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib.pyplot as plt  # loaded and set to Agg by bench/__init__

    return plt


def cdf(series_ms: dict[str, list[float]], title: str, path: Path) -> Path:
    """One CDF line per named series of durations in milliseconds."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, values in series_ms.items():
        if len(values):
            v = np.sort(np.asarray(values))
            ax.plot(v, np.arange(1, v.size + 1) / v.size, label=name)
    return _finish(plt, fig, ax, "milliseconds", "fraction of frames", title, path)


def over_time(series: dict[str, tuple[list[float], list[float]]], ylabel: str, title: str, path: Path,
              xlabel: str = "frame") -> Path:
    """One line per named (x, y) series."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name, linewidth=1)
    return _finish(plt, fig, ax, xlabel, ylabel, title, path)


def _finish(plt, fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def panels(charts: list[tuple[str, str, dict[str, tuple[list[float], list[float]]]]], path: Path,
           xlabel: str = "seconds", dots: tuple[str, ...] = ()) -> Path:
    """Stacked charts sharing the x axis: (title, ylabel, named (x, y) series); series named in `dots` are
    drawn as points (events, not a curve)."""
    plt = _plt()
    fig, axes = plt.subplots(len(charts), 1, figsize=(8, 2.4 * len(charts)), sharex=True, squeeze=False)
    for ax, (title, ylabel, series) in zip(axes[:, 0], charts):
        for name, (x, y) in series.items():
            if name in dots:
                ax.plot(x, y, ".", markersize=3, label=name)
            else:
                ax.plot(x, y, label=name, linewidth=1)
        ax.set(ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
