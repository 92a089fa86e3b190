"""The "detectors" section of `samtrack bench concepts`: each open-vocabulary detector's cost per call at seeded
random weights (bench/detectors.py), and what it costs tracking: a Tracker stepping frames at the model's size, alone
and with the daemon's own detector worker (tracker/daemon/detecting.py: a child process at idle priority, fed the
newest frame without ever being waited for) offered a frame every `every_s` seconds. Blocks of frames alternate
between the two conditions, so the machine's other load falls on both alike."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from bench.detectors import TEXTS, THRESHOLD, DetectorTiming, time_detectors
from bench.scenario import object_boxes
from pipelines.synthetic import moving_shapes_frame
from tracker.percentiles import Percentiles, percentiles

# The goal: the tracking step's p99 with a detector call every second at most this many times its p99
# without one, on 2 cores.
GOAL_P99_RATIO = 1.25
BLOCKS = 4  # blocks of frames per condition, alternating (alone, beside, alone, ...): more spreads drifting load
WARMUP_FRAMES = 2  # frames stepped before timing: the first pays for allocations and caches
DETECTOR_IDLE_S = 600.0  # longest wait for the detector's call in flight to end before a block alone (a slow CPU)
IDLE_POLL_S = 0.05  # how often that wait looks


@dataclass(frozen=True)
class TrackingBeside:
    """The tracking step alone and with one detector's worker called beside it."""

    detector: str
    every_s: float  # seconds between frames offered to the worker (a call longer than that: back to back)
    objects: int
    alone_ms: Percentiles
    beside_ms: Percentiles
    calls_beside: int  # detector calls that ended while the tracker stepped beside them
    detector_ms_beside: Percentiles | None  # their cost, sharing the CPU with the tracker (None: no call ended)

    @property
    def p99_ratio(self) -> float:
        return self.beside_ms.p99 / self.alone_ms.p99

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "p99_ratio": round(self.p99_ratio, 3),
                "meets_goal": self.p99_ratio <= GOAL_P99_RATIO}


def tracking_beside(name: str, model, engines, frames: int, every_s: float, objects: int = 1, width: int = 640,
                    height: int = 480, device: str = "cpu", precision: str = "auto") -> TrackingBeside:
    """About `frames` timed tracking steps alone and as many with detector `name`'s worker offered a frame every
    `every_s` seconds, the worker as `serve --detector` starts it (its cached weights, else seeded random ones; the
    daemon's default threads and priority): BLOCKS blocks of frames // BLOCKS steps (at least one) per condition.
    DetectorStartError when the worker cannot start."""
    from tracker import Tracker
    from tracker.core.options import TrackerOptions
    from tracker.daemon.config import DetectorSection
    from tracker.daemon.detecting import DetectJob, DetectorSettings, DetectorWorker

    defaults = DetectorSection()  # the daemon's: its threads and priority
    worker = DetectorWorker(DetectorSettings(name, device, defaults.threads, defaults.idle_priority))
    tracker = Tracker(model, TrackerOptions.from_model(model, precision=precision), engines)
    tracker.step(moving_shapes_frame(0, height, width))
    for k, box in enumerate(object_boxes(objects, width, height)):
        tracker.add_box(k + 1, box)
    times: dict[bool, list[float]] = {False: [], True: []}
    calls_ms: list[float] = []
    per_block = max(1, frames // BLOCKS)
    i = 1
    try:
        for _ in range(WARMUP_FRAMES):
            tracker.step(moving_shapes_frame(i, height, width))
            i += 1
        for block in range(2 * BLOCKS):
            beside = block % 2 == 1
            if not beside:  # no call of the previous block left running into this one
                deadline = time.monotonic() + DETECTOR_IDLE_S
                while worker.busy and time.monotonic() < deadline:
                    time.sleep(IDLE_POLL_S)
            next_offer = time.monotonic()
            for _ in range(per_block):
                frame = moving_shapes_frame(i, height, width)
                if beside and time.monotonic() >= next_offer:  # as the daemon's tracking thread offers: never waits
                    worker.offer(DetectJob("bench", i, frame, TEXTS, THRESHOLD))
                    next_offer = time.monotonic() + every_s
                t = time.perf_counter()
                tracker.step(frame)
                times[beside].append((time.perf_counter() - t) * 1000)
                calls_ms += [d.ms for d in worker.take() if d.error is None]
                i += 1
    finally:
        worker.close()
    return TrackingBeside(name, every_s, objects, percentiles(times[False]), percentiles(times[True]),
                          len(calls_ms), percentiles(calls_ms) if calls_ms else None)


def detectors_section(names: list[str], model_name: str, image_size: int, calls: int, frames: int, every_s: float,
                      threads: int, device: str = "cpu") -> dict:
    """The JSON section "detectors": per detector, its cost per call alone and the tracking step beside its worker
    (or why the worker could not start: grounding-dino-tiny without its tokenizer's download)."""
    from tracker.build import engines_for
    from tracker.daemon.detecting import DetectorStartError
    from tracker.models import seeded_model

    costs: list[DetectorTiming] = time_detectors(names, image_size, calls, device)
    model = seeded_model(model_name, image_size, device=device)
    engines = engines_for(model, "auto", threads=threads)  # as the daemon picks
    tracking = {}
    for n in names:
        try:
            tracking[n] = tracking_beside(n, model, engines, frames, every_s, device=device).as_dict()
        except DetectorStartError as e:
            tracking[n] = {"error": str(e)}
    measured = [t for t in tracking.values() if "error" not in t]
    return {"settings": {"detectors": names, "model": model_name, "image_size": image_size, "calls": calls,
                         "frames": frames, "every_s": every_s, "threads": threads, "device": device,
                         "texts": list(TEXTS), "weights": "per call: seeded random (real configs); beside: the "
                                                         "worker's (cached download, else seeded random)"},
            "per_call": {t.name: dataclasses.asdict(t) for t in costs},
            "tracking": tracking,
            "goal": f"tracking step p99 with the detector every {every_s:g} s <= {GOAL_P99_RATIO}x without",
            "meets_goal": bool(measured) and all(t["meets_goal"] for t in measured)}


def rows(section: dict) -> list[list]:
    """The printed table's rows: one per detector, then the goal."""
    out = []
    for name, t in section["tracking"].items():
        call = section["per_call"][name]
        if "error" in t:
            out.append([name, round(call["p50_ms"]), round(call["p95_ms"]), "-", "-", "-", "-", "-", "-", "not run"])
            continue
        beside = t["detector_ms_beside"]
        out.append([name, round(call["p50_ms"]), round(call["p95_ms"]), t["calls_beside"],
                    round(beside["p50"]) if beside else "-", round(t["alone_ms"]["p50"]), round(t["alone_ms"]["p99"]),
                    round(t["beside_ms"]["p50"]), round(t["beside_ms"]["p99"]), f"{t['p99_ratio']:.2f}x"])
    out.append(["goal", "", "", "", "", "", "", "", "", f"<= {GOAL_P99_RATIO}x"])
    return out


HEADER = ["detector", "ms/call p50", "p95", "calls beside", "ms/call beside", "step alone p50", "p99",
          "step beside p50", "p99", "p99 ratio"]
