"""`samtrack replay DIR`: a recording through a fresh tracker, published like a daemon, optionally verified."""

from __future__ import annotations

import argparse

from ..core.options import PRECISIONS
from ..paths import existing_dir
from .args import CHECKPOINT


def add_replay_parser(sub) -> None:
    from ..protocol.base import DEFAULT_COMMANDS, DEFAULT_RESULTS

    p = sub.add_parser("replay", help="replay a recording (serve --record) like a daemon; --verify compares results",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("directory", type=existing_dir("recording's directory", "one written by `samtrack serve --record`"),
                   help="the recording's directory")
    p.add_argument("--verify", action="store_true", help="compare every result with the recorded one; exit 1 at "
                                                         "the first divergence")
    p.add_argument("--realtime", action="store_true", help="pace frames as they were captured")
    p.add_argument("--checkpoint", type=CHECKPOINT,
                   help="checkpoint file (default: the cached one for the recorded model)")
    p.add_argument("--precision", choices=PRECISIONS, help="default: the recording's (results then identical)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="PUB endpoint the replay publishes on")
    p.add_argument("--commands", default=DEFAULT_COMMANDS, help="ROUTER endpoint for clients (ping, stats, ...)")
    p.add_argument("--preview-every", type=int, default=0, help="publish a JPEG preview every N frames")
    p.set_defaults(func=run_replay)


def run_replay(args) -> int:
    import base64
    import time
    from pathlib import Path

    from engines.cache import weights_digest

    from .. import __version__
    from .. import protocol as P
    from ..core.tracker import Tracker
    from ..daemon.config import load_config
    from ..daemon.loop import Daemon
    from ..daemon.stream import Stream
    from ..daemon.wiring import settings_from
    from ..models import weights
    from ..runner.recording import Manifest, RecordingError
    from ..runner.replay import RecordingSource, Verifier

    directory = Path(args.directory)
    m = Manifest.read(directory)
    if m.samtrack != __version__:
        print(f"WARNING: recorded with samtrack {m.samtrack}, this is {__version__}: results may differ")
    options = {k: v for k, v in m.options.items() if k != "precision"}
    checkpoint = weights.resolve_checkpoint(m.model, args.checkpoint)
    tracker = Tracker.build(m.model, checkpoint, m.image_size, args.device, threads=m.threads,
                            precision=args.precision or m.precision, **options)
    if weights_digest({"model": tracker.model}) != m.weights_sha256:
        raise RecordingError(f"{directory} was recorded with other weights than {checkpoint or 'seeded random'} "
                             f"for {m.model}: pass the recording's --checkpoint")
    exact = tracker.precision == m.precision
    source = RecordingSource(directory, realtime=args.realtime)
    # The daemon's own defaults, with this command's endpoints; the recording's stream name.
    settings = settings_from(load_config(None, {
        "endpoints.results": args.results, "endpoints.commands": args.commands, "metrics.enabled": False}))
    verifier = Verifier(exact, on_divergence=lambda text: daemon.stop()) if args.verify else None
    daemon = Daemon([Stream(m.stream, source, tracker, preview_every=args.preview_every)], settings,
                    on_result=verifier.on_result if verifier else None)

    def apply(record: dict, offset: int) -> None:
        """A recorded command, sent through the daemon's own handler at the point it was served."""
        cmd = dict(record["args"])
        if isinstance(cmd.get("frame"), int):
            cmd["frame"] -= offset
        frames = [base64.b64decode(record["mask"])] if record.get("mask") else []
        done = daemon.handler.handle([P.request(0, record["op"], cmd), *frames])
        if done.result is None and verifier is not None:
            verifier.divergence = f"after frame {record['after_frame']}: {record['op']} failed on replay: " \
                                  f"{done.reply.decode()}"
            daemon.stop()

    source.on_command = apply
    if verifier is not None:
        source.on_expected = verifier.on_expected
    daemon.install_signal_handlers()
    t0 = time.monotonic()
    daemon.run()
    frames, seconds = daemon.stream.stats.frames, time.monotonic() - t0
    print(f"replayed {frames} frames of {directory} in {seconds:.1f} s ({frames / max(seconds, 1e-9):.2f} frames/s, "
          f"{tracker.precision}); {len(source.warnings)} warning(s)")
    if verifier is None:
        return 0
    if verifier.divergence is not None:
        print(f"DIVERGED: {verifier.divergence}")
        return 1
    if exact:
        print(f"verified: {verifier.compared} frames identical to the recording")
    else:
        ious = verifier.ious or [1.0]
        print(f"compared {verifier.compared} frames on {tracker.precision} against the recording's "
              f"{m.precision}: mask IoU mean {sum(ious) / len(ious):.4f}, min {min(ious):.4f}")
    return 0
