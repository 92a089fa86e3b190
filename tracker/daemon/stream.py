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
from .statedir import StateStore
from .stats import Stats

STATE_OPS = frozenset({"add_points", "add_box", "add_mask", "remove_object", "reset"})  # change what a restart needs


@dataclass
class Stream:
    name: str
    source: Source
    tracker: Tracker
    preview_every: int = 0  # a JPEG preview every N frames (0: never)
    recorder: Recorder | None = None
    state: StateStore | None = None  # None: a stream built without the daemon's identity (tests, tools)
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

    def tracked(self, frame: Frame, result: FrameResult) -> None:
        """A tracked frame and its published result: into the recording (when recording), its number reserved."""
        if self.recorder is not None:
            self.recorder.frame(frame, result.frame_index)
            self.recorder.result(result)
        if self.state is not None:
            self.state.reserve(result.frame_index + 1)

    def accepted(self, after_frame: int | None, op: str, args: dict, frames: list[bytes], result: dict) -> None:
        """An accepted request: the state saved and the request recorded when it changed what they keep."""
        if self.state is not None and op in STATE_OPS:
            self.state.save(self.tracker)
        if self.recorder is None or op not in RECORDED_OPS:
            return
        if op == "import_state":
            self.recorder.import_state(after_frame, frames[0], result)
        else:
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
            metrics_port=metrics_port, precision=self.tracker.precision, streams=streams, state=self._state_status(),
            backend=self.tracker.backend)

    def _state_status(self) -> messages.StateStatus | None:
        r = self.state.report if self.state is not None else None
        if r is None:
            return None
        return messages.StateStatus(r.path, r.restored_objects, r.restored_frame, r.writes, r.write_errors,
                                    r.last_bytes, r.set_aside)

    def summary(self) -> str:
        """This stream in a few words, for systemd's STATUS line."""
        if self.error is not None:
            return f"{self.name}: cannot start"
        if self.ended:
            return f"{self.name}: ended"
        state = "ok" if self.source.connected else "reconnecting"
        return f"{self.name}: {self.stats.fps:.1f} fps, {len(self.tracker.objects)} obj, {state}"
