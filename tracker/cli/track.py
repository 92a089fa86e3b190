"""`samtrack track`: the streaming tracker on a synthetic moving-shapes stream, with a box prompt,
printing per-frame results and timing (a self-contained check that the core works on this machine)."""

from __future__ import annotations

import argparse
import statistics
import time

from ..core.options import PRECISIONS
from ..models import weights
from ..models.registry import model_spec


def add_track_parser(sub) -> None:
    p = sub.add_parser("track", help="track a synthetic stream and print per-frame results",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_t", help="model name (see `samtrack weights list`)")
    p.add_argument("--checkpoint", help="checkpoint file (default: the cached one, else random weights)")
    p.add_argument("--image-size", type=int, default=512, help="model input size (1024 is Meta's; 512 suits CPUs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="fp32 (exact), bf16 (fast path) or auto")
    p.add_argument("--frames", type=int, default=30, help="frames to track")
    p.add_argument("--size", default="320x240", help="frame size WxH of the synthetic stream")
    p.set_defaults(func=run_track)


def run_track(args) -> int:
    from pipelines.synthetic import box_of_first_shape, moving_shapes_frame

    from ..core.tracker import Tracker

    w, h = (int(v) for v in args.size.lower().split("x"))
    checkpoint = weights.resolve_checkpoint(args.model, args.checkpoint)
    what = checkpoint or "NONE: random weights, masks are meaningless"
    print(f"model {model_spec(args.model).name}, checkpoint {what}")
    tracker = Tracker.build(args.model, checkpoint, args.image_size, args.device, threads=args.threads,
                            precision=args.precision)
    times = []
    for i in range(args.frames):
        frame = moving_shapes_frame(i, h, w)
        t0 = time.perf_counter()
        result = tracker.step(frame)
        if i == 0:
            result = tracker.add_box(1, box_of_first_shape(0, h, w))
        times.append(time.perf_counter() - t0)
        for o in result.objects.values():
            print(f"frame {result.frame_index:4d}  obj {o.obj_id}  present {o.present!s:5}  score {o.score:7.3f}  "
                  f"area {o.area:6d}  bbox {o.bbox}  {1000 * times[-1]:7.1f} ms")
    steady = times[1:] or times
    print(f"{len(times)} frames, median {1000 * statistics.median(steady):.1f} ms/frame "
          f"({1 / statistics.median(steady):.1f} fps) after the first")
    return 0
