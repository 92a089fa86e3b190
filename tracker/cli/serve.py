"""`samtrack serve` (the daemon, from a config file and flags) and `samtrack config check|example`."""

from __future__ import annotations

from ..core.options import BACKEND_CHOICES, PRECISIONS
from ..paths import dir_to_write, existing_file
from ..protocol import MASK_ENCODINGS
from ..recording.inputs import source_arg
from .args import CHECKPOINT, add_log_level, image_size

# flag dest -> config field it overrides
FLAG_FIELDS = {
    "stream": "stream.name", "model": "model.name", "checkpoint": "model.checkpoint",
    "image_size": "model.image_size", "device": "model.device", "threads": "model.threads",
    "results": "endpoints.results", "commands": "endpoints.commands", "mask_encoding": "output.mask_encoding",
    "preview_every": "output.preview_every", "feature_window": "memory.feature_window",
    "metrics_port": "metrics.port", "log_level": "logging.level", "backend": "model.backend",
    "precision": "model.precision", "publish_queue": "output.publish_queue", "record": "record.directory",
    "batch_streams": "memory.batch_streams", "max_objects": "memory.max_objects", "state": "state.dir",
    "between_key_frames": "tracking.between_key_frames", "motion_frames_kept": "tracking.motion_frames_kept",
    "detector": "detector.model",
}


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the tracker daemon on a source (flags override --config)")
    p.add_argument("--config", type=existing_file("config file"),
                   help="TOML config file (see `samtrack config example`)")
    p.add_argument("--source", action="append", metavar="[NAME=]SOURCE", type=source_arg(named=True),
                   help="test:, a file, v4l2:/dev/videoN, rtsp://..., gst:..., or a recording's directory (its "
                        "frames at their pace); repeat as NAME=SOURCE for several streams on one model")
    p.add_argument("--stream", help="stream name (topic suffix)")
    p.add_argument("--model", help="model name, e.g. sam2.1_hiera_t (see `samtrack weights list`)")
    p.add_argument("--checkpoint", type=CHECKPOINT,
                   help="checkpoint file (default: the cached one for the model, else random)")
    p.add_argument("--image-size", type=image_size, help="model input size, a multiple of 32 (config: 512)")
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:1 ... (`samtrack doctor --device` checks it)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--backend", choices=BACKEND_CHOICES, help="engines: auto (default), torch, openvino, onnxruntime, "
                                                              "tensorrt (docs/engines.md)")
    p.add_argument("--precision", choices=PRECISIONS, help="fp32 (exact), bf16 (fast path) or auto")
    p.add_argument("--results", help="PUB endpoint for results")
    p.add_argument("--commands", help="ROUTER endpoint for commands")
    p.add_argument("--mask-encoding", choices=MASK_ENCODINGS,
                   help="how masks are published: rle (COCO), bits, png, or none (summaries only); docs/protocol.md")
    p.add_argument("--preview-every", type=int, help="publish a JPEG preview every N frames (0: off)")
    p.add_argument("--publish-queue", type=int, help="results waiting for the publisher thread (0: publish inline)")
    p.add_argument("--record", metavar="DIR", type=dir_to_write("recording directory"),
                   help="record frames, commands and results here (samtrack replay DIR)")
    p.add_argument("--state", metavar="DIR", type=dir_to_write("state directory"),
                   help="keep each stream's objects here across restarts (default: systemd's $STATE_DIRECTORY when "
                        "set)")
    p.add_argument("--no-state", action="store_true", help="keep no state: a restart forgets every object")
    p.add_argument("--feature-window", type=int, help="recent frames a prompt may name")
    p.add_argument("--between-key-frames", choices=("motion", "drop"),
                   help="a live source's frames the model does not take: answered by its masks moved by motion "
                        "(default) or left unanswered ([tracking] between_key_frames)")
    p.add_argument("--motion-frames-kept", type=int,
                   help="frames answered by motion whose picture is kept for prompts ([tracking] motion_frames_kept)")
    p.add_argument("--max-objects", type=int, help="objects tracked at once per stream (more: too_many_objects)")
    p.add_argument("--batch-streams", action="store_true", default=None,
                   help="encode the frames of all streams of a turn in one batch (backend torch)")
    p.add_argument("--detector", metavar="NAME",
                   help="open-vocabulary detector for concept prompts (add_concept): owlv2-base, omdet-turbo, "
                        "grounding-dino-tiny, sam3 (GPU) ([detector] model; needs samtrack[concepts])")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (0: any free port)")
    p.add_argument("--no-metrics", action="store_true", help="do not serve metrics")
    add_log_level(p, None)  # None: the config file's [logging] level
    p.set_defaults(func=run_serve, leave_at_once=True)  # a daemon: see main.leave

    c = sub.add_parser("config", help="configuration files").add_subparsers(dest="action", required=True)
    check = c.add_parser("check", help="validate a config file without starting")
    check.add_argument("file", type=existing_file("config file"), help="the TOML config file")
    check.set_defaults(func=run_config_check)
    c.add_parser("example", help="print a commented example config").set_defaults(func=run_config_example)


def run_config_check(args) -> int:
    from ..daemon.config import load_config

    cfg = load_config(args.file)
    print(f"{args.file}: ok (stream {cfg.stream.name!r}, source {cfg.stream.source!r}, model {cfg.model.name})")
    return 0


def run_config_example(args) -> int:
    from ..daemon.config import example_toml

    print(example_toml(), end="")
    return 0


def run_serve(args) -> int:
    from ..daemon.config import load_config
    from ..daemon.wiring import serve

    overrides = {field: getattr(args, dest) for dest, field in FLAG_FIELDS.items() if getattr(args, dest) is not None}
    overrides.update(_source_overrides(args.source or []))
    if args.no_metrics:
        overrides["metrics.enabled"] = False
    if args.no_state:
        overrides["state.enabled"] = False
    return serve(load_config(args.config, overrides))


def _source_overrides(sources: list[str]) -> dict[str, object]:
    """One bare --source SOURCE sets [stream]; NAME=SOURCE (one or several) set [[streams]]."""
    from ..errors import SamtrackError
    from ..protocol import is_stream_name

    if not sources:
        return {}
    named = []
    for text in sources:
        name, sep, uri = text.partition("=")
        named.append((name, uri) if sep and is_stream_name(name) and uri else None)
    if len(sources) == 1 and named[0] is None:
        return {"stream.source": sources[0]}
    if None in named:
        bare = sources[named.index(None)]
        raise SamtrackError(f"--source {bare!r}: with several sources, name each as NAME=SOURCE (e.g. "
                            f"--source door=rtsp://cam1/stream --source yard=v4l2:/dev/video0)")
    return {"streams": [{"name": name, "source": uri} for name, uri in named]}
