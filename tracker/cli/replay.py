"""`samtrack replay DIR`: a recording through a fresh tracker, published like a daemon, optionally verified."""

from __future__ import annotations

from ..core.options import BACKEND_CHOICES, PRECISIONS
from ..paths import existing_dir
from .args import CHECKPOINT, HelpFormatter


def add_replay_parser(sub) -> None:
    from ..protocol.base import DEFAULT_COMMANDS, DEFAULT_RESULTS

    p = sub.add_parser("replay", help="replay a recording (serve --record) like a daemon; --verify compares results",
                       formatter_class=HelpFormatter)
    p.add_argument("directory", type=existing_dir("recording's directory", "one written by `samtrack serve --record`"),
                   help="the recording's directory")
    p.add_argument("--verify", action="store_true", help="compare every result with the recorded one; exit 1 at "
                                                         "the first divergence")
    p.add_argument("--realtime", action="store_true", help="pace frames as they were captured")
    p.add_argument("--checkpoint", type=CHECKPOINT,
                   help="checkpoint file (default: the cached one for the recorded model)")
    p.add_argument("--precision", choices=PRECISIONS, help="default: each session's (results then identical)")
    p.add_argument("--backend", choices=BACKEND_CHOICES,
                   help="engines (docs/engines.md); default: each session's own, part by part (results then identical)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="PUB endpoint the replay publishes on")
    p.add_argument("--commands", default=DEFAULT_COMMANDS, help="ROUTER endpoint for clients (ping, stats, ...)")
    p.add_argument("--preview-every", type=int, default=0, help="publish a JPEG preview every N frames")
    p.set_defaults(func=run_replay)


def run_replay(args) -> int:
    from pathlib import Path

    from .. import __version__
    from ..daemon.replay import ReplaySettings, replay
    from ..recording.format import Manifest
    from ..recording.verify import MIN_MEAN_IOU

    directory = Path(args.directory)
    if (version := Manifest.read(directory).samtrack) != __version__:
        print(f"WARNING: recorded with samtrack {version}, this is {__version__}: results may differ")
    r = replay(ReplaySettings(directory, args.verify, args.realtime, args.checkpoint, args.precision, args.backend,
                              args.device, args.results, args.commands, args.preview_every))
    moved = f" and {r.motion_frames} answered by motion" if r.motion_frames else ""
    print(f"replayed {r.frames} frames{moved} of {directory} ({r.sessions} session(s)) in {r.seconds:.1f} s "
          f"({r.frames / max(r.seconds, 1e-9):.2f} frames/s, {r.precision}); {len(r.warnings)} warning(s)")
    v = r.verifier
    if v is None:
        return 0
    if v.divergence is not None:
        print(f"DIVERGED: {v.divergence}")
        return 1
    if v.compared == 0:
        print("NOT VERIFIED: no recorded result could be compared (every frame lost, or no result recorded)")
        print("\n".join(f"not compared: {why}" for why in v.unverified))
        return 1
    if v.identical_motion:  # a frame may have two answers: by motion, then by the model
        lines = [f"verified: {v.identical} answers identical to the recording ({v.identical - v.identical_motion} "
                 f"by the model, {v.identical_motion} by motion)"]
    else:
        lines = [f"verified: {v.identical} frames identical to the recording"]
    if v.iou_frames:
        iou = f"mask IoU mean {sum(v.ious) / len(v.ious):.4f}, min {min(v.ious):.4f}" if v.ious else "no object"
        lines.append(f"compared {v.iou_frames} frames on {r.precision} against the recording's "
                     f"{r.recorded_precision}: {iou} (contract: mean >= {MIN_MEAN_IOU})")
    if v.skipped:
        lines.append(f"{v.skipped} recorded results not compared (their frames were lost while recording)")
    lines += [f"not compared: {why}" for why in v.unverified]
    print("\n".join(lines))
    return 0
