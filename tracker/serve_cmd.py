"""`samtrack serve` (the daemon, from a config file and flags) and `samtrack config check|example`."""

from __future__ import annotations

import logging

from .protocol import MASK_ENCODINGS

log = logging.getLogger(__name__)

# flag dest -> config field it overrides
FLAG_FIELDS = {
    "source": "stream.source", "stream": "stream.name", "model": "model.name", "checkpoint": "model.checkpoint",
    "image_size": "model.image_size", "device": "model.device", "threads": "model.threads",
    "results": "endpoints.results", "commands": "endpoints.commands", "mask_encoding": "output.mask_encoding",
    "preview_every": "output.preview_every", "feature_window": "memory.feature_window",
    "metrics_port": "metrics.port", "log_level": "logging.level", "backend": "model.backend",
}


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the tracker daemon on a source (flags override --config)")
    p.add_argument("--config", help="TOML config file (see `samtrack config example`)")
    p.add_argument("--source", help="test:, a file, v4l2:/dev/videoN, rtsp://..., gst:...")
    p.add_argument("--stream", help="stream name (topic suffix)")
    p.add_argument("--model")
    p.add_argument("--checkpoint", help="checkpoint file (default: the cached one for the model, else random)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--device")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "tensorrt"], help="image encoder backend")
    p.add_argument("--results", help="PUB endpoint for results")
    p.add_argument("--commands", help="ROUTER endpoint for commands")
    p.add_argument("--mask-encoding", choices=MASK_ENCODINGS)
    p.add_argument("--preview-every", type=int, help="publish a JPEG preview every N frames (0: off)")
    p.add_argument("--feature-window", type=int, help="recent frames a prompt may name")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (0: any free port)")
    p.add_argument("--no-metrics", action="store_true", help="do not serve metrics")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=run_serve)

    c = sub.add_parser("config", help="configuration files").add_subparsers(dest="action", required=True)
    check = c.add_parser("check", help="validate a config file without starting")
    check.add_argument("file")
    check.set_defaults(func=run_config_check)
    c.add_parser("example", help="print a commented example config").set_defaults(func=run_config_example)


def run_config_check(args) -> int:
    from .config import load_config

    cfg = load_config(args.file)
    print(f"{args.file}: ok (stream {cfg.stream.name!r}, source {cfg.stream.source!r}, model {cfg.model.name})")
    return 0


def run_config_example(args) -> int:
    from .config import example_toml

    print(example_toml(), end="")
    return 0


def run_serve(args) -> int:
    from . import weights
    from .config import load_config
    from .daemon import Daemon, DaemonSettings
    from .security import CurveServer
    from .tracker import Tracker

    overrides = {field: getattr(args, dest) for dest, field in FLAG_FIELDS.items() if getattr(args, dest) is not None}
    if args.no_metrics:
        overrides["metrics.enabled"] = False
    cfg = load_config(args.config, overrides)
    logging.getLogger().setLevel(cfg.logging.level)
    checkpoint = weights.resolve_checkpoint(cfg.model.name, cfg.model.checkpoint)
    tracker = Tracker.build(cfg.model.name, checkpoint, cfg.model.image_size, cfg.model.device,
                            threads=cfg.model.threads or None, backend=cfg.model.backend,
                            engine_cache=cfg.model.engine_cache or None, feature_window=cfg.memory.feature_window,
                            max_cond_frames=cfg.memory.max_cond_frames, batch_objects=cfg.memory.batch_objects)
    from pipelines import open_source
    from pipelines.live import Backoff

    # The source after the tracker: torch's ONNX exporter crashes once GStreamer's libraries are loaded.
    source = open_source(cfg.stream.source, stall_timeout_s=cfg.stream.stall_timeout_s,
                         backoff=Backoff(cfg.stream.reconnect_initial_s, 2.0, cfg.stream.reconnect_max_s))
    settings = DaemonSettings(
        stream=cfg.stream.name, results=cfg.endpoints.results, commands=cfg.endpoints.commands,
        mask_encoding=cfg.output.mask_encoding, preview_every=cfg.output.preview_every,
        metrics_address=cfg.metrics.address if cfg.metrics.enabled else None, metrics_port=cfg.metrics.port,
        curve=CurveServer(cfg.auth.server_secret_key, cfg.auth.authorized_clients) if cfg.auth.curve else None,
        watchdog_stall_s=cfg.service.watchdog_stall_s, status_every_s=cfg.service.status_every_s,
    )
    daemon = Daemon(source, tracker, settings)
    daemon.install_signal_handlers()
    daemon.run()
    log.info("stopped cleanly after %d frames", daemon.stats.frames)
    return 0
