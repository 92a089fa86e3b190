"""Stage timings on the device's own timeline, without waiting for the device between stages.

On the CPU a mark is `time.perf_counter()`. On a CUDA device it is an event recorded on the current stream:
the GPU stamps it when it gets there, so each stage is charged the GPU time it took, not the time to launch
its kernels. Marks are read once, at the end of a step, after the masks' copy to the host has waited for the
GPU anyway; reading the last mark then costs nothing more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

Mark = Any  # a float (seconds, CPU) or a torch.cuda.Event


@dataclass(frozen=True)
class Span:
    """The time between two marks, of which `share` is charged (frames encoded in one batch share its time)."""

    start: Mark
    end: Mark
    share: float = 1.0


class StageClock:
    """Marks and the seconds between them, for one device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def mark(self) -> Mark:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def settle(self, last: Mark) -> None:
        """Wait until the device has reached `last`, the latest mark: every earlier one is then readable."""
        if self.cuda:
            last.synchronize()

    def seconds(self, span: Span) -> float:
        """The span's charged seconds (on CUDA, once `settle` has seen a mark at or after its end)."""
        if not self.cuda:
            return (span.end - span.start) * span.share
        return span.start.elapsed_time(span.end) / 1000.0 * span.share

    def total(self, spans: list[Span]) -> float:
        return sum(self.seconds(s) for s in spans)
