"""`samtrack track SOURCE`: a video file (or any source) with prompts on given frames, to an overlaid video
and/or per-frame masks (JSON lines)."""

from __future__ import annotations

import argparse
import sys

from ..core.options import BACKEND_CHOICES, PRECISIONS
from ..paths import existing_file, file_to_write
from ..recording.inputs import source_arg
from .args import CHECKPOINT, VIDEO_TO_WRITE, HelpFormatter, box, image_size, point


class _Event(argparse.Action):
    """Keeps --frame/--object/--point/--box in the order typed (the prompt plan depends on it)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.events = [*(getattr(namespace, "events", None) or []), (self.dest, values)]


def add_track_parser(sub) -> None:
    p = sub.add_parser("track", help="track a video file with prompts on given frames; write an overlay and masks",
                       formatter_class=HelpFormatter,
                       description="Flags are read in order: --frame F and --object N say where the following "
                                   "--point and --box go (frame 0, object 1 until given).")
    p.add_argument("source", type=source_arg(),
                   help="a video file GStreamer decodes, a recording's directory (serve --record), or test:, v4l2:, "
                        "rtsp://, gst: with --frames")
    p.add_argument("--frame", type=int, action=_Event, dest="frame", help="frame index of the next prompts")
    p.add_argument("--object", type=int, action=_Event, dest="object", help="object id of the next prompts")
    p.add_argument("--point", type=point, action=_Event, dest="point", help="a click X,Y[,LABEL] (repeatable)")
    p.add_argument("--box", type=box, action=_Event, dest="box", help="a box X0,Y0,X1,Y1")
    p.add_argument("--prompts", type=existing_file("prompts file"),
                   help="JSON file: [{\"frame\", \"object\", \"points\", \"labels\", \"box\"}, ...]")
    p.add_argument("--out", type=VIDEO_TO_WRITE,
                   help="overlaid video to write (.mp4, .mkv, .webm, .avi)")
    p.add_argument("--masks", type=file_to_write("masks file", "masks.jsonl"),
                   help="per-frame results to write as JSON lines (COCO RLE masks)")
    p.add_argument("--frames", type=int, help="stop after N frames (needed for live sources)")
    p.add_argument("--key-frame-every", type=_positive, default=1, metavar="N",
                   help="run the model on every Nth frame (and on prompted frames) and carry its masks by motion to "
                        "the frames between: a quick preview of a long file (1: the model on every frame)")
    p.add_argument("--model", default="sam2.1_hiera_t", help="model name (see `samtrack weights list`)")
    p.add_argument("--checkpoint", type=CHECKPOINT,
                   help="checkpoint file (default: the cached one, else random weights)")
    p.add_argument("--image-size", type=image_size, default=1024, help="model input size (512 is faster on CPUs)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="fp32 (exact), bf16 (fast path) or auto")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="engines: auto (OpenVINO on CPUs unless --precision fp32), torch, openvino, ...")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_track, events=None)


def run_track(args) -> int:
    from pathlib import Path

    from pipelines import parse_source

    from ..core.tracker import Tracker
    from ..errors import SamtrackError
    from ..models import weights
    from ..recording.inputs import is_recording, open_input
    from ..runner.plan import check_plan, plan_from_file, plan_from_flags
    from ..runner.track import track_source

    if args.prompts and args.events:
        raise SamtrackError("give prompts as flags or as --prompts FILE, not both")
    prompts = plan_from_file(args.prompts) if args.prompts else plan_from_flags(args.events or [])
    if not prompts:
        raise SamtrackError("no prompt: give --point/--box (with --object/--frame) or --prompts FILE")
    if not (args.out or args.masks):
        raise SamtrackError("nothing to write: give --out VIDEO and/or --masks FILE.jsonl")
    recording = is_recording(args.source)
    spec = None if recording else parse_source(args.source)
    if spec is not None and spec.live and not args.frames:
        raise SamtrackError(f"{args.source} is a live source: give --frames N")
    count, size = (None, None) if recording or spec.live else _file_facts(spec)
    late = [p for p in prompts if count is not None and p.frame >= count]
    if late:
        raise SamtrackError(f"{args.source} has {count} frames (0..{count - 1}); prompts on "
                            + ", ".join(f"frame {p.frame} (object {p.obj})" for p in late) + " cannot apply")
    check_plan(prompts, size or (spec.nominal_size if spec is not None else None))  # before any model loads
    checkpoint = weights.resolve_checkpoint(args.model, args.checkpoint)
    # The tracker before the source: torch's ONNX exporter crashes once GStreamer's libraries are loaded.
    tracker = Tracker.build(args.model, checkpoint, args.image_size, args.device, threads=args.threads,
                            backend=args.backend, precision=args.precision)
    source = open_input(args.source, reconnect=False)
    summary = track_source(source, tracker, prompts, Path(args.out) if args.out else None,
                           Path(args.masks) if args.masks else None, args.frames,
                           count, progress=not args.quiet, key_frame_every=args.key_frame_every)
    written = " and ".join(filter(None, (args.out, args.masks)))
    if summary.interrupted:
        print(f"samtrack track: interrupted after {summary.frames} frames: {written} hold those frames (complete, "
              "readable files; the rest of the source was not tracked)", file=sys.stderr)
        return 130
    print(f"{summary.frames} frames, {len(summary.objects)} object(s), {summary.fps:.2f} frames/s "
          f"({tracker.backend}, {tracker.precision}); wrote {written}")
    return 0


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return n


def _file_facts(spec) -> tuple[int | None, tuple[int, int] | None]:
    """The file's frame count (for the progress bar's ETA) and frame size as its container says, where it says."""
    if spec.kind != "file":
        return None, None
    import cv2

    cap = cv2.VideoCapture(spec.location)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    return n if n > 0 else None, (w, h) if w > 0 and h > 0 else None
