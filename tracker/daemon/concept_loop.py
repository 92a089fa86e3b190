"""The concepts' part of the daemon's turn, on the tracking thread: a model frame offered to the detector when a
concept of its stream is due, and the detector's answers that came applied on their frames, their changes published
(revisions, events), saved and handed to the motion thread. Never waits for the detector."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from pipelines.frame import Frame

from ..core.results import FrameResult
from .detecting import RESULTS_KEPT, DetectDone, DetectJob, DetectorHealth, DetectorWorker
from .metrics import Metrics
from .publisher import Publisher
from .stream import Stream

log = logging.getLogger(__name__)

# Frames re-tracked per turn for objects a detector found (each prompted on its answer's frame and re-tracked to the
# newest): at least one object a turn, more while their re-tracking stays under this. Lower spreads a call's new
# objects over more turns (each frame waits less; the objects appear later); measured in docs/design.md.
RETRACK_FRAMES_PER_TURN = 8

class ConceptLoop:
    """`changed(stream, frame, added)`: the daemon's reaction to objects added on `frame` (a revision of it and of
    the newest frame, the motion thread seeded) or, with `added` False, removed only."""

    def __init__(self, worker: DetectorWorker | None, publisher: Publisher, metrics: Metrics,
                 changed: Callable[[Stream, int | None, bool], None]):
        self.worker = worker
        self.publisher = publisher
        self.metrics = metrics
        self._changed = changed
        # Answers taken, held while their stream prompts the last one's objects: at most RESULTS_KEPT after a turn,
        # the oldest beyond dropped and counted
        self._waiting: deque[DetectDone] = deque()

    def tracked(self, st: Stream, frame: Frame, result: FrameResult) -> None:
        """A model frame of `st` just tracked: the detector is asked about it if a concept is due (the newest such
        frame replaces one the detector has not taken yet)."""
        if self.worker is None:
            return
        texts, threshold = st.concepts.due(result.frame_index, time.monotonic())
        if texts:
            self.worker.offer(DetectJob(st.name, result.frame_index, frame.image, texts, threshold))

    def turn(self, streams: dict[str, Stream]) -> None:
        """Objects found by the last answers prompted (a few a turn), the answers that came applied to their streams
        (an answer waits while its stream still prompts the last one's objects; beyond RESULTS_KEPT waiting the oldest
        are dropped, counted as the detector's own drops are), then every stream's events published."""
        for st in streams.values():
            if st.concepts.adding:
                try:
                    applied = st.concepts.add_waiting(RETRACK_FRAMES_PER_TURN)
                except Exception:  # noqa: BLE001  (one answer's failure must not end the daemon)
                    log.exception("stream %s: adding the objects a detector found failed; they are dropped", st.name)
                    st.concepts.drop_waiting()
                    continue
                if applied is not None:
                    self._save(st)
                    self._changed(st, applied.frame, True)
        if self.worker is not None:
            self._waiting.extend(self.worker.take())
            for name, n in self.worker.take_lost().items():
                self._dropped(streams.get(name), n)
        for done in list(self._waiting):
            st = streams.get(done.stream)
            if st is not None and st.concepts.adding:
                continue
            self._waiting.remove(done)
            if st is None or not st.running:
                continue
            too_old = st.concepts.too_old
            try:
                applied = st.concepts.apply(done)
            except Exception:  # noqa: BLE001  (one answer's failure must not end the daemon)
                log.exception("stream %s: applying a detector answer on frame %d failed", st.name, done.frame)
                st.concepts.errors += 1
                st.concepts.drop_waiting()
                continue
            latest = st.tracker.latest_frame
            self.metrics.observe_detector(st.name, done.ms, None if latest is None else latest - done.frame,
                                          st.concepts.too_old - too_old, done.error is not None)
            if applied is not None:
                self._save(st)  # counters moved on, objects may be gone
            if applied is not None and applied.removed:
                self._changed(st, None, False)
        while len(self._waiting) > RESULTS_KEPT:
            self._dropped(streams.get(self._waiting.popleft().stream), 1)
        for st in streams.values():
            events = st.concepts.take_events()
            self.publisher.publish_events(st.name, events)
            for e in events:
                self.metrics.concept_events.labels(st.name, e.kind).inc()

    def _dropped(self, st: Stream | None, n: int) -> None:
        """`n` answers of `st` dropped unapplied: counted (stats, metrics) and said."""
        if st is None:
            return
        st.concepts.dropped += n
        self.metrics.detector_dropped.labels(st.name).inc(n)
        log.warning("stream %s: %d detector answer(s) dropped unapplied: %d newer ones waited", st.name, n,
                    RESULTS_KEPT)

    def _save(self, st: Stream) -> None:
        if st.state is not None:
            st.state.save(st.tracker)
            st.state.save_concepts(st.concepts.to_dict())

    def health(self) -> DetectorHealth | None:
        """The detector's process (None without a detector)."""
        return self.worker.health() if self.worker is not None else None

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
