"""Daemon counters and rolling per-stage timings, reported by the `stats` command."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from ..percentiles import Percentiles, percentiles

WINDOW = 1000  # recent frames kept per timing series: percentiles follow the present, memory stays flat
FPS_FRAMES = 64  # frames the fps is measured over: about two seconds at 30 fps


@dataclass
class Stats:
    """What the daemon has done since it started."""

    started: float = field(default_factory=time.monotonic)
    frames: int = 0  # frames the model tracked and published (key frames)
    motion_frames: int = 0  # frames answered by motion between key frames
    frame_errors: int = 0  # frames skipped because tracking raised
    prompts: int = 0  # prompts applied
    requests: int = 0  # command requests received
    retracked_frames: int = 0  # frames re-tracked for prompts on past frames
    errors: Counter = field(default_factory=Counter)  # error replies by code
    timings_ms: dict[str, deque] = field(default_factory=dict)  # stage -> recent durations (ms)
    _frame_times: deque = field(default_factory=lambda: deque(maxlen=FPS_FRAMES))
    _answer_times: deque = field(default_factory=lambda: deque(maxlen=FPS_FRAMES))  # model and motion answers
    _lock: threading.Lock = field(default_factory=threading.Lock)  # stages come from two threads

    def record_frame(self, stages_ms: dict[str, float]) -> None:
        self.frames += 1
        now = time.monotonic()
        self._frame_times.append(now)
        self._answer_times.append(now)
        self.record_stages(stages_ms)

    def record_motion(self, motion_ms: float) -> None:
        """A frame answered by motion (its stream's motion thread)."""
        self.motion_frames += 1
        self._answer_times.append(time.monotonic())
        self.record_stages({"motion": motion_ms})

    def record_stages(self, stages_ms: dict[str, float]) -> None:
        with self._lock:
            for k, v in stages_ms.items():
                self.timings_ms.setdefault(k, deque(maxlen=WINDOW)).append(v)

    @property
    def fps(self) -> float:
        """Key frames a second: the model's own rate."""
        return _rate(self._frame_times)

    @property
    def answered_fps(self) -> float:
        """Frames answered a second, by the model or by motion."""
        return _rate(self._answer_times)

    def percentiles(self) -> dict[str, Percentiles]:
        with self._lock:
            return {k: percentiles(v) for k, v in self.timings_ms.items()}


def _rate(times: deque) -> float:
    t = list(times)  # a copy: the motion thread appends meanwhile
    return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
