"""Building a daemon from its configuration: the tracker (model and backends), the source, the settings."""

from __future__ import annotations

import logging
from pathlib import Path

from ..core.tracker import Tracker
from ..models import weights
from ..protocol.curve import CurveServer
from ..runner.recording import Manifest
from .config import Config
from .loop import Daemon, DaemonSettings
from .recorder import Recorder, RecordSettings

log = logging.getLogger(__name__)


def settings_from(cfg: Config) -> DaemonSettings:
    return DaemonSettings(
        stream=cfg.stream.name, results=cfg.endpoints.results, commands=cfg.endpoints.commands,
        mask_encoding=cfg.output.mask_encoding, preview_every=cfg.output.preview_every,
        publish_queue=cfg.output.publish_queue,
        metrics_address=cfg.metrics.address if cfg.metrics.enabled else None, metrics_port=cfg.metrics.port,
        curve=CurveServer(cfg.auth.server_secret_key, cfg.auth.authorized_clients) if cfg.auth.curve else None,
        watchdog_stall_s=cfg.service.watchdog_stall_s, status_every_s=cfg.service.status_every_s,
    )


def build_daemon(cfg: Config) -> Daemon:
    """The tracker first, then the source (torch's ONNX exporter crashes once GStreamer's libraries are
    loaded, and an onnxruntime backend may export on first use)."""
    from pipelines import open_source
    from pipelines.live import DEFAULT_BACKOFF, Backoff

    checkpoint = weights.resolve_checkpoint(cfg.model.name, cfg.model.checkpoint)
    m, mem = cfg.model, cfg.memory
    tracker = Tracker.build(m.name, checkpoint, m.image_size, m.device, threads=m.threads or None, backend=m.backend,
                            engine_cache=m.engine_cache or None, feature_window=mem.feature_window,
                            max_cond_frames=mem.max_cond_frames, batch_objects=mem.batch_objects,
                            precision=m.precision)
    recorder = recorder_for(cfg, tracker) if cfg.record.directory else None
    source = open_source(cfg.stream.source, stall_timeout_s=cfg.stream.stall_timeout_s,
                         backoff=Backoff(cfg.stream.reconnect_initial_s, DEFAULT_BACKOFF.factor,
                                         cfg.stream.reconnect_max_s))
    return Daemon(source, tracker, settings_from(cfg), recorder=recorder)


def recorder_for(cfg: Config, tracker: Tracker) -> Recorder:
    """The recorder of [record], with the manifest a replay needs to rebuild this tracker."""
    import dataclasses

    import torch

    from engines.cache import weights_digest

    from .. import __version__

    r = cfg.record
    manifest = Manifest(samtrack=__version__, model=cfg.model.name, image_size=tracker.image_size,
                        weights_sha256=weights_digest({"model": tracker.model}),
                        options={**dataclasses.asdict(tracker.options), "precision": tracker.precision},
                        precision=tracker.precision, threads=torch.get_num_threads(), stream=cfg.stream.name)
    settings = RecordSettings(Path(r.directory).expanduser(), r.segment_s, int(r.segment_mb * 2**20),
                              int(r.max_mb * 2**20), r.queue_frames)
    return Recorder(settings, manifest)


def serve(cfg: Config) -> int:
    """Run a daemon from its configuration until SIGINT/SIGTERM or the end of its source; the exit code."""
    logging.getLogger().setLevel(cfg.logging.level)
    daemon = build_daemon(cfg)
    daemon.install_signal_handlers()
    daemon.run()
    log.info("stopped cleanly after %d frames", daemon.stats.frames)
    return 0
