"""Scenario `record`: what `serve --record` costs and gives. The tracking step with and without a recorder
fed as the daemon feeds it (blocks of frames alternated in one run, the writer drained between blocks so
each block pays only for its own frames); bytes per frame of the recording (the scene, and the scene with
camera-like noise); then the recording tracked again with `samtrack track`'s runner (decode + track +
masks written, frames/s) beside the step's own rate.

    samtrack bench record [--quick] [--image-size 512] [--width 640 --height 480] [--block 5] [--keep DIR]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import environment, percentiles, table, write_json
from bench.plots import cdf
from bench.scenario import object_boxes, outputs, scenario_parser
from pipelines.frame import Frame
from pipelines.synthetic import moving_shapes_frame
from tracker import Tracker
from tracker.models import seeded_model
from tracker.paths import dir_to_write
from tracker.recording.format import Manifest
from tracker.recording.writer import Recorder, RecordSettings

NOISE_SIGMA = 3.0  # grey levels of sensor-like noise for the camera estimate of bytes per frame
DRAIN_TIMEOUT_S = 60.0


def _recorder(directory: Path, args) -> Recorder:
    manifest = Manifest("bench", args.model, args.image_size, "0" * 64, {}, args.precision, args.threads, "bench")
    # Large segments and limit: rotation and deletion are not what is measured here.
    return Recorder(RecordSettings(directory, 3600.0, 1 << 34, 1 << 36, queue_frames=8), manifest)


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def overhead(args, frames: list[np.ndarray], directory: Path) -> tuple[dict, Tracker]:
    """Step times in alternating blocks, recorder off / on."""
    tracker = Tracker.from_sam2(seeded_model(args.model, args.image_size, device=args.device),
                                precision=args.precision)
    recorder = _recorder(directory, args)
    tracker.step(frames[0])
    for k, box in enumerate(object_boxes(args.objects[0], args.width, args.height)):
        tracker.add_box(k + 1, box)
    times: dict[bool, list[float]] = {False: [], True: []}
    recorded = 0
    for i, image in enumerate(frames[1:], start=1):
        on = ((i - 1) // args.block) % 2 == 1
        if (i - 1) % args.block == 0 and not recorder.flush(DRAIN_TIMEOUT_S):  # a block starts: writer idle
            raise RuntimeError(f"the recorder did not drain within {DRAIN_TIMEOUT_S:.0f} s")
        t0 = time.perf_counter()
        result = tracker.step(image)
        if on:  # what Daemon._track does with a recorder
            recorder.frame(Frame(i, None, time.monotonic_ns(), image), recorded)  # numbered as a recording of its own
            recorder.result(result)
            recorded += 1
        dt = time.perf_counter() - t0
        if i > args.warmup:
            times[on].append(dt)
    recorder.close()
    off, on = np.median(times[False]), np.median(times[True])
    return {"step_off": percentiles(times[False]), "step_on": percentiles(times[True]),
            "overhead": float(on / off - 1), "frames_recorded": recorded, "lost": recorder.lost,
            "bytes_per_frame": _size(directory) / max(recorded, 1), "_series": times}, tracker


def noisy_bytes_per_frame(args, frames: list[np.ndarray], directory: Path) -> float:
    """The same frames with camera-like noise, recorded without tracking: FFV1 on a real sensor's output."""
    rng = np.random.default_rng(0)
    recorder = _recorder(directory, args)
    for i, image in enumerate(frames):
        noisy = np.clip(image + rng.normal(0, NOISE_SIGMA, image.shape), 0, 255).astype(np.uint8)
        recorder.frame(Frame(i, None, time.monotonic_ns(), noisy), i)
        recorder.flush(DRAIN_TIMEOUT_S)  # never lose a frame here: this measures size, not speed
    recorder.close()
    return _size(directory) / len(frames)


def track_recording(args, directory: Path, tracker: Tracker) -> dict:
    """`samtrack track` on the recording: frames decoded, tracked with the bench's prompts, masks written."""
    from tracker.recording.replay import RecordingSource
    from tracker.runner.plan import Prompt
    from tracker.runner.track import track_source

    fresh = tracker.share(precision=args.precision)  # the same engines: built before GStreamer was loaded
    prompts = [Prompt(frame=0, obj=k + 1, points=[], labels=[], box=box)
               for k, box in enumerate(object_boxes(args.objects[0], args.width, args.height))]
    summary = track_source(RecordingSource(directory), fresh, prompts, masks=directory / "masks.jsonl",
                           progress=False)
    return {"frames": summary.frames, "seconds": summary.seconds, "fps": summary.fps}


def parser():
    p = scenario_parser("record", __doc__, frames=60, quick_frames=20)
    p.add_argument("--block", type=int, default=5, help="frames per block; blocks alternate recorder off / on")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="the tracker's arithmetic (docs/engines.md)")
    p.add_argument("--keep", metavar="DIR", type=dir_to_write("recording directory"),
                   help="keep the recording made while tracking (and the masks tracked from it) in DIR; default: a "
                        "temporary directory, removed")
    p.set_defaults(objects=[1])
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out or f"bench-results/record-{args.image_size}.json", (".png",))
    torch.set_num_threads(args.threads)
    frames = [moving_shapes_frame(i, args.height, args.width) for i in range(1 + args.warmup + args.frames)]
    with tempfile.TemporaryDirectory(prefix="samtrack-bench-record-") as tmp:
        scene, noisy = Path(args.keep) if args.keep else Path(tmp) / "scene", Path(tmp) / "noisy"
        cost, tracker = overhead(args, frames, scene)
        series = cost.pop("_series")
        noisy_bpf = noisy_bytes_per_frame(args, frames, noisy)
        track = track_recording(args, scene, tracker)
    step_fps = 1000.0 / cost["step_off"]["p50_ms"]
    data = {"benchmark": "record", "settings": {k: getattr(args, k) for k in (
                "model", "image_size", "objects", "frames", "warmup", "width", "height", "block", "precision",
                "device")},
            "environment": environment(args.threads), "precision": tracker.precision, **cost,
            "bytes_per_frame_noisy": noisy_bpf, "noise_sigma": NOISE_SIGMA, "raw_bytes_per_frame":
                args.width * args.height * 3, "track": track, "step_fps": step_fps}
    write_json(out, data)
    cdf({"recorder off": [1000 * t for t in series[False]], "recorder on": [1000 * t for t in series[True]]},
        f"tracking step with and without recording, {args.image_size}px", out.with_suffix(".png"))
    print(table([["off", cost["step_off"]["p50_ms"], cost["step_off"]["p99_ms"]],
                 ["on", cost["step_on"]["p50_ms"], cost["step_on"]["p99_ms"]]], ["recorder", "step p50 ms", "p99"]))
    print(f"overhead {100 * cost['overhead']:+.1f} % (p50); lost {cost['lost']} of {cost['frames_recorded']}")
    print(f"bytes per frame at {args.width}x{args.height}: {cost['bytes_per_frame']:.0f} (scene), "
          f"{noisy_bpf:.0f} (noise sigma {NOISE_SIGMA:g}); raw {args.width * args.height * 3}")
    print(f"samtrack track on the recording: {track['frames']} frames in {track['seconds']:.1f} s = "
          f"{track['fps']:.2f} fps; the step alone: {step_fps:.2f} fps ({tracker.precision})")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return data


if __name__ == "__main__":
    main()
