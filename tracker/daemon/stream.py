"""One stream of a daemon: its source, its tracker (banks, window, frame numbering), its counters, and
its recorder when recording. A daemon holds one or several; they share the model and the sockets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pipelines.base import Source
from pipelines.frame import Frame

from ..core.results import FrameResult
from ..core.tracker import Tracker
from ..protocol import messages
from ..recording.format import RECORDED_OPS
from ..recording.writer import Recorder
from .stats import Stats


@dataclass
class Stream:
    name: str
    source: Source
    tracker: Tracker
    preview_every: int = 0  # a JPEG preview every N frames (0: never)
    recorder: Recorder | None = None
    stats: Stats = field(default_factory=Stats)
    error: str | None = None  # why its source could not start (the stream is down, the others run)
    ended: bool = False  # its source ended (a file, a recording) and the end message went out
    last_frame: float = 0.0  # monotonic time of its last tracked frame

    @property
    def running(self) -> bool:
        return self.error is None and not self.ended

    @property
    def source_error(self) -> str | None:
        """Why the source is down: it could not start, or (still retrying) why its last attempt failed."""
        if self.error is not None:
            return self.error
        return None if self.source.connected else self.source.last_error

    def record_tracked(self, frame: Frame, result: FrameResult) -> None:
        """A tracked frame and its published result, into the recording (when recording)."""
        if self.recorder is not None:
            self.recorder.frame(frame, result.frame_index)
            self.recorder.result(result)

    def record_command(self, after_frame: int | None, op: str, args: dict, frames: list[bytes],
                       result: dict) -> None:
        """An accepted request, into the recording when it changes the tracker's state."""
        if self.recorder is not None and op in RECORDED_OPS:
            self.recorder.command(after_frame, op, args, frames[0] if frames else None, result)

    def status(self, streams: list[str], metrics_port: int | None) -> messages.DaemonStatus:
        src, info = self.source, self.source.info
        window = self.tracker.window
        return messages.DaemonStatus(
            stream=self.name, frame=self.tracker.latest_frame,
            source=messages.SourceStatus(
                kind=src.spec.kind, live=src.spec.live, width=info.width if info else None,
                height=info.height if info else None, fps=info.fps if info else None, dropped=src.dropped,
                reconnects=src.reconnects, connected=src.connected and self.error is None, error=self.source_error),
            uptime_s=time.monotonic() - self.stats.started, window=window[:1] + window[-1:],
            metrics_port=metrics_port, precision=self.tracker.precision, streams=streams)

    def summary(self) -> str:
        """This stream in a few words, for systemd's STATUS line."""
        if self.error is not None:
            return f"{self.name}: cannot start"
        if self.ended:
            return f"{self.name}: ended"
        state = "ok" if self.source.connected else "reconnecting"
        return f"{self.name}: {self.stats.fps:.1f} fps, {len(self.tracker.objects)} obj, {state}"
