"""The "detectors" section of `samtrack bench concepts`: each open-vocabulary detector's cost per call at seeded
random weights (bench/detectors.py), and what it costs tracking: a Tracker stepping frames at the model's size in
one thread, alone and with the detector calling beside it on the newest frame every `every_s` seconds in another
thread of the same process (as the daemon runs it: its own thread, never waited for). Blocks of frames alternate
between the two conditions, so the machine's other load falls on both alike."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.detectors import TEXTS, THRESHOLD, DetectorTiming, quiet, stand_in_bert_vocab, time_detectors
from bench.scenario import object_boxes
from pipelines.synthetic import moving_shapes_frame
from tracker.percentiles import Percentiles, percentiles

# The goal: the tracking step's p99 with a detector call every second at most this many times its p99
# without one, on 2 cores.
GOAL_P99_RATIO = 1.25
BLOCKS = 4  # blocks of frames per condition, alternating (alone, beside, alone, ...): more spreads drifting load
WARMUP_FRAMES = 2  # frames stepped before timing: the first pays for allocations and caches
DETECTOR_IDLE_S = 600.0  # longest wait for the detector's call in flight to end before a block alone (a slow CPU)


@dataclass(frozen=True)
class TrackingBeside:
    """The tracking step alone and with one detector calling beside it."""

    detector: str
    every_s: float  # seconds between the starts of the detector's calls (back to back when a call is longer)
    objects: int
    alone_ms: Percentiles
    beside_ms: Percentiles
    calls_beside: int  # detector calls that ran while the tracker stepped
    detector_ms_beside: Percentiles | None  # their cost, sharing the CPU with the tracker (None: no call finished)

    @property
    def p99_ratio(self) -> float:
        return self.beside_ms.p99 / self.alone_ms.p99

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "p99_ratio": round(self.p99_ratio, 3),
                "meets_goal": self.p99_ratio <= GOAL_P99_RATIO}


class _Detecting(threading.Thread):
    """Calls `detect` on the newest frame every `every_s` seconds while `active` is set; `idle` is set between
    calls."""

    def __init__(self, detector, every_s: float):
        super().__init__(daemon=True, name="detector")
        self.detector, self.every_s = detector, every_s
        self.newest: np.ndarray | None = None
        self.active, self.idle, self.stop = threading.Event(), threading.Event(), threading.Event()
        self.idle.set()
        self.ms: list[float] = []

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.active.wait(0.05) or self.newest is None:
                continue
            self.idle.clear()
            t = time.perf_counter()
            try:
                self.detector.detect(self.newest, TEXTS, THRESHOLD)
            finally:
                self.idle.set()
            took = time.perf_counter() - t
            self.ms.append(took * 1000)
            self.stop.wait(max(0.0, self.every_s - took))


def tracking_beside(name: str, model, engines, frames: int, every_s: float, objects: int = 1, width: int = 640,
                    height: int = 480, device: str = "cpu", precision: str = "auto") -> TrackingBeside:
    """About `frames` timed tracking steps alone and as many with detector `name` (real config, seeded random
    weights) calling beside them: BLOCKS blocks of frames // BLOCKS steps (at least one) per condition."""
    from tracker import Tracker
    from tracker.core.options import TrackerOptions
    from tracker.models.detectors import load_detector

    with tempfile.TemporaryDirectory() as empty_cache, quiet():
        detector = load_detector(name, device=device, seed=0, directory=Path(empty_cache), vocab=stand_in_bert_vocab())
    tracker = Tracker(model, TrackerOptions.from_model(model, precision=precision), engines)
    tracker.step(moving_shapes_frame(0, height, width))
    for k, box in enumerate(object_boxes(objects, width, height)):
        tracker.add_box(k + 1, box)
    worker = _Detecting(detector, every_s)
    worker.start()
    times: dict[bool, list[float]] = {False: [], True: []}
    per_block = max(1, frames // BLOCKS)
    i = 1
    try:
        for _ in range(WARMUP_FRAMES):
            tracker.step(moving_shapes_frame(i, height, width))
            i += 1
        for block in range(2 * BLOCKS):
            beside = block % 2 == 1
            if beside:
                worker.active.set()
            else:
                worker.active.clear()
                worker.idle.wait(DETECTOR_IDLE_S)  # no call of the previous block left running into this one
            for _ in range(per_block):
                frame = moving_shapes_frame(i, height, width)
                worker.newest = frame
                t = time.perf_counter()
                tracker.step(frame)
                times[beside].append((time.perf_counter() - t) * 1000)
                i += 1
    finally:
        worker.active.clear()
        worker.stop.set()
        worker.join(DETECTOR_IDLE_S)
    return TrackingBeside(name, every_s, objects, percentiles(times[False]), percentiles(times[True]),
                          len(worker.ms), percentiles(worker.ms) if worker.ms else None)


def detectors_section(names: list[str], model_name: str, image_size: int, calls: int, frames: int, every_s: float,
                      threads: int, device: str = "cpu") -> dict:
    """The JSON section "detectors": per detector, its cost per call alone and the tracking step beside it."""
    from tracker.build import engines_for
    from tracker.models import seeded_model

    costs: list[DetectorTiming] = time_detectors(names, image_size, calls, device)
    model = seeded_model(model_name, image_size, device=device)
    engines = engines_for(model, "auto", threads=threads)  # as the daemon picks
    beside = [tracking_beside(n, model, engines, frames, every_s, device=device) for n in names]
    return {"settings": {"detectors": names, "model": model_name, "image_size": image_size, "calls": calls,
                         "frames": frames, "every_s": every_s, "threads": threads, "device": device,
                         "texts": list(TEXTS), "weights": "seeded random (real configs)"},
            "per_call": {t.name: dataclasses.asdict(t) for t in costs},
            "tracking": {b.detector: b.as_dict() for b in beside},
            "goal": f"tracking step p99 with the detector every {every_s:g} s <= {GOAL_P99_RATIO}x without",
            "meets_goal": all(b.p99_ratio <= GOAL_P99_RATIO for b in beside)}


def rows(section: dict) -> list[list]:
    """The printed table's rows: one per detector, then the goal."""
    out = []
    for name, t in section["tracking"].items():
        call = section["per_call"][name]
        beside = t["detector_ms_beside"]
        out.append([name, round(call["p50_ms"]), round(call["p95_ms"]), t["calls_beside"],
                    round(beside["p50"]) if beside else "-", round(t["alone_ms"]["p50"]), round(t["alone_ms"]["p99"]),
                    round(t["beside_ms"]["p50"]), round(t["beside_ms"]["p99"]), f"{t['p99_ratio']:.2f}x"])
    out.append(["goal", "", "", "", "", "", "", "", "", f"<= {GOAL_P99_RATIO}x"])
    return out


HEADER = ["detector", "ms/call p50", "p95", "calls beside", "ms/call beside", "step alone p50", "p99",
          "step beside p50", "p99", "p99 ratio"]
