"""`samtrack serve`: run the daemon on a source."""

from __future__ import annotations

import argparse
import logging

from .protocol import MASK_ENCODINGS

log = logging.getLogger(__name__)


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the tracker daemon on a source",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--source", default="test:", help="test:, a file, v4l2:/dev/videoN, rtsp://..., gst:...")
    p.add_argument("--stream", default="default", help="stream name (topic suffix)")
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--checkpoint", help="checkpoint file (default: the cached one for --model, else random)")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--results", default="tcp://127.0.0.1:5555", help="PUB endpoint for results")
    p.add_argument("--commands", default="tcp://127.0.0.1:5556", help="ROUTER endpoint for commands")
    p.add_argument("--mask-encoding", choices=MASK_ENCODINGS, default="rle")
    p.add_argument("--preview-every", type=int, default=0, help="publish a JPEG preview every N frames (0: off)")
    p.add_argument("--feature-window", type=int, default=16, help="recent frames a prompt may name")
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    from pipelines import open_source

    from . import weights
    from .daemon import Daemon, Endpoints
    from .tracker import Tracker

    checkpoint = args.checkpoint
    if checkpoint is None and weights.checkpoint_path(args.model).is_file():
        checkpoint = str(weights.checkpoint_path(args.model))
    source = open_source(args.source)
    tracker = Tracker.build(args.model, checkpoint, args.image_size, args.device, threads=args.threads,
                            feature_window=args.feature_window)
    daemon = Daemon(source, tracker, args.stream, Endpoints(args.results, args.commands),
                    args.mask_encoding, args.preview_every)
    daemon.install_signal_handlers()
    daemon.run()
    log.info("stopped cleanly after %d frames", daemon.stats.frames)
    return 0
