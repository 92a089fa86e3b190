"""The daemon's service side, once per turn: systemd's READY/STATUS/WATCHDOG and the metrics whose totals
are kept elsewhere (sources, recorders, banks, the detector's process)."""

from __future__ import annotations

import time

from .detecting import DetectorHealth
from .metrics import Metrics
from .sdnotify import Notifier
from .stream import Stream


class Service:
    """READY after the first tracked frame, STATUS periodically, WATCHDOG while frames flow on at least one
    stream (a daemon whose every camera stalled is restarted by systemd)."""

    def __init__(self, notifier: Notifier, metrics: Metrics, watchdog_stall_s: float, status_every_s: float):
        self.notifier, self.metrics = notifier, metrics
        self.watchdog_stall_s = watchdog_stall_s
        self.status_every_s = status_every_s
        self.ready = False
        self._last_ping = self._last_status = 0.0

    def tick(self, streams: dict[str, Stream], detector: DetectorHealth | None = None) -> None:
        now = time.monotonic()
        m = self.metrics
        for st in streams.values():
            _sync(m, st)
        if detector is not None:
            m.sync_detector(detector.name, detector.alive, detector.restarts, detector.hung)
        if not self.ready and any(st.stats.frames for st in streams.values()):
            self.ready = True
            self.notifier.ready(status_line(streams))
        if not self.ready:
            return
        if now - self._last_status >= self.status_every_s:
            self._last_status = now
            for st in streams.values():
                m.bank_bytes.labels(st.name).set(st.tracker.held_bytes())
            self.notifier.status(status_line(streams))
        interval = self.notifier.watchdog_interval_s
        flowing = any(now - st.last_frame < self.watchdog_stall_s for st in streams.values())
        if interval is not None and flowing and now - self._last_ping >= interval:
            self._last_ping = now
            self.notifier.watchdog()


def _sync(m: Metrics, st: Stream) -> None:
    """Metrics of one stream whose totals its source, recorder and tracker keep."""
    m.objects.labels(st.name).set(len(st.tracker.objects))
    if st.recorder is not None:
        r = st.recorder
        m.sync_recorder(st.name, r.lost, r.errors, r.results_lost + r.commands_lost + r.markers_lost)
    if st.state is not None and st.state.report is not None:
        m.sync_state(st.name, st.state.report.writes, st.state.report.write_errors)
    if st.error is not None:
        return
    m.sync_source(st.name, st.dropped, st.source.reconnects)
    m.source_up.labels(st.name).set(1 if st.source.connected and not st.ended else 0)


def status_line(streams: dict[str, Stream]) -> str:
    """What systemd's STATUS= says: the one stream in a sentence, or each stream in a few words."""
    if len(streams) == 1:
        st = next(iter(streams.values()))
        return (f"{st.stats.fps:.1f} fps, {len(st.tracker.objects)} objects, frame {st.tracker.latest_frame}, "
                f"source {'ok' if st.source.connected else 'reconnecting'}")
    return "; ".join(st.summary() for st in streams.values())
