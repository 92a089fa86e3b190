"""Prometheus metrics of the daemon (prometheus-client), served over HTTP."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .security import BindError

# Latency buckets (seconds) from 1 ms to 10 s: GPU steps sit at the low end, CPU steps at the high end.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Stages measured per frame: header timings_ms keys -> metric stage label.
STAGES = {"queue": "capture_to_track", "encoder": "encoder", "track": "memory_attention_decoder",
          "memory_encoder": "memory_encoder", "publish": "publish", "motion": "motion"}


UNROUTED = "-"  # the stream label of requests that name no stream the daemon serves (malformed, unknown)


class Metrics:
    """The daemon's metrics in their own registry (no process-global state), labelled by stream."""

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.stage = Histogram("samtrack_stage_seconds", "Time per frame in each stage", ["stream", "stage"],
                               buckets=BUCKETS, registry=r)
        self.end_to_end = Histogram("samtrack_end_to_end_seconds", "Capture to published result",
                                    ["stream"], buckets=BUCKETS, registry=r)
        self.frames = Counter("samtrack_frames", "Frames the model tracked and published (key frames)", ["stream"],
                              registry=r)
        self.motion_frames = Counter("samtrack_motion_frames", "Frames answered by motion between key frames",
                                     ["stream"], registry=r)
        self.dropped = Counter("samtrack_dropped_frames", "Live frames that got no answer (replaced by newer ones "
                               "before the model took them, without motion; or left by a starved motion thread)",
                               ["stream"], registry=r)
        self.frame_errors = Counter("samtrack_frame_errors", "Frames skipped because tracking failed", ["stream"],
                                    registry=r)
        self.prompts = Counter("samtrack_prompts", "Prompts applied", ["stream"], registry=r)
        self.errors = Counter("samtrack_request_errors", "Error replies by code", ["stream", "code"], registry=r)
        self.reconnects = Counter("samtrack_source_reconnects", "Live source reconnections", ["stream"], registry=r)
        self.record_lost = Counter("samtrack_record_lost_frames", "Frames the recorder could not keep or write",
                                   ["stream"], registry=r)
        self.record_errors = Counter("samtrack_record_errors", "Failed recording writes (a full disk...)",
                                     ["stream"], registry=r)
        self.record_dropped = Counter("samtrack_record_dropped", "Results and commands the recorder dropped (its "
                                      "queue was full)", ["stream"], registry=r)
        self.state_writes = Counter("samtrack_state_writes", "Stream states written (after prompts, removals, "
                                    "resets, imports)", ["stream"], registry=r)
        self.state_write_errors = Counter("samtrack_state_write_errors", "Failed writes of a stream's state or "
                                          "frame reservation (a full disk...)", ["stream"], registry=r)
        self.objects = Gauge("samtrack_objects", "Tracked objects", ["stream"], registry=r)
        self.bank_bytes = Gauge("samtrack_memory_bank_bytes", "Bytes held by the tracker's memory and window",
                                ["stream"], registry=r)
        self.source_up = Gauge("samtrack_source_up", "1 while the stream's source delivers, 0 while it is down "
                               "or could not start", ["stream"], registry=r)
        self.detector_calls = Counter("samtrack_detector_calls", "Detector calls answered (concepts)", ["stream"],
                                      registry=r)
        self.detector_errors = Counter("samtrack_detector_errors", "Detector calls that failed", ["stream"],
                                       registry=r)
        self.detector_too_old = Counter("samtrack_detector_too_old", "Detector answers whose frame had left the "
                                        "window (nothing applied)", ["stream"], registry=r)
        self.detector_dropped = Counter("samtrack_detector_dropped", "Detector answers dropped unapplied (more "
                                        "waited than the daemon keeps)", ["stream"], registry=r)
        self.detector_seconds = Histogram("samtrack_detector_seconds", "Time per detector call (its process)",
                                          ["stream"], buckets=BUCKETS, registry=r)
        self.detector_lag = Gauge("samtrack_detector_lag_frames", "Model frames between the last detector call's "
                                  "frame and the newest when it was applied", ["stream"], registry=r)
        # The detector's process is the daemon's, not a stream's: labelled by its name, so a daemon without one has none
        self.detector_up = Gauge("samtrack_detector_up", "1 while the concepts' detector process is ready for calls, "
                                 "0 from its death or a hung call until it is started again", ["detector"],
                                 registry=r)
        self.detector_restarts = Counter("samtrack_detector_restarts", "Detector processes started again after one "
                                         "died or hung", ["detector"], registry=r)
        self.detector_hung = Counter("samtrack_detector_hung", "Detector calls without an answer within their "
                                     "deadline (the process killed and started again)", ["detector"], registry=r)
        self.concept_events = Counter("samtrack_concept_events", "Concepts' lifecycle events by kind",
                                      ["stream", "kind"], registry=r)
        self._seen: dict[tuple[Counter, str], int] = {}  # totals kept elsewhere, as last synced
        self._server = None

    def serve(self, address: str, port: int) -> int:
        """Start the HTTP endpoint; return the port it listens on (BindError when it cannot)."""
        try:
            self._server, _thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as e:
            raise BindError(f"cannot serve metrics on {address}:{port}: {e.strerror}; is another samtrack daemon "
                            "running? Pick another with --metrics-port (0: any free one), --no-metrics, [metrics] "
                            "port") from None
        return self._server.server_port

    def observe_frame(self, s: str, stages_ms: dict[str, float]) -> None:
        """A tracked frame of stream s and its stages (tracking thread)."""
        self.frames.labels(s).inc()
        for key, label in STAGES.items():
            if key in stages_ms:
                self.stage.labels(s, label).observe(stages_ms[key] / 1000.0)

    def observe_motion(self, s: str, motion_ms: float) -> None:
        """A frame of stream s answered by motion (its motion thread)."""
        self.motion_frames.labels(s).inc()
        self.stage.labels(s, STAGES["motion"]).observe(motion_ms / 1000.0)

    def observe_published(self, s: str, publish_ms: float, end_to_end_s: float) -> None:
        """A result of stream s that left the PUB socket (publisher thread)."""
        self.stage.labels(s, STAGES["publish"]).observe(publish_ms / 1000.0)
        self.end_to_end.labels(s).observe(end_to_end_s)

    def observe_detector(self, s: str, ms: float, lag_frames: int | None, too_old: int, failed: bool) -> None:
        """A detector answer for stream s (tracking thread)."""
        self.detector_calls.labels(s).inc()
        self.detector_seconds.labels(s).observe(ms / 1000.0)
        if lag_frames is not None:
            self.detector_lag.labels(s).set(lag_frames)
        self.detector_too_old.labels(s).inc(too_old)
        if failed:
            self.detector_errors.labels(s).inc()

    def sync_recorder(self, s: str, lost: int, errors: int, dropped: int) -> None:
        """Counters that a stream's recorder keeps as totals."""
        self._sync(self.record_lost, s, lost)
        self._sync(self.record_errors, s, errors)
        self._sync(self.record_dropped, s, dropped)

    def sync_state(self, s: str, writes: int, errors: int) -> None:
        """Counters that a stream's state store keeps as totals."""
        self._sync(self.state_writes, s, writes)
        self._sync(self.state_write_errors, s, errors)

    def sync_source(self, s: str, dropped: int, reconnects: int) -> None:
        """Counters that a stream's source keeps as totals."""
        self._sync(self.dropped, s, dropped)
        self._sync(self.reconnects, s, reconnects)

    def sync_detector(self, name: str, alive: bool, restarts: int, hung: int) -> None:
        """The detector process's state and the totals its worker keeps."""
        self.detector_up.labels(name).set(1 if alive else 0)
        self._sync(self.detector_restarts, name, restarts)
        self._sync(self.detector_hung, name, hung)

    def _sync(self, counter: Counter, s: str, total: int) -> None:
        seen = self._seen.get((counter, s), 0)
        if total > seen:
            counter.labels(s).inc(total - seen)
            self._seen[(counter, s)] = total

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
