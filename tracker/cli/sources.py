"""`samtrack sources probe SOURCE`: open a source, print what it delivers, and close it."""

from __future__ import annotations

import time

from ..recording.inputs import source_arg


def add_sources_parser(sub) -> None:
    p = sub.add_parser("sources", help="frame sources").add_subparsers(dest="action", required=True)
    probe = p.add_parser("probe", help="print size, fps, caps and the first frame's timestamp of a source")
    probe.add_argument("source", type=source_arg(recordings=False),
                       help="test:, a file path, v4l2:/dev/videoN, rtsp://..., or gst:<pipeline>")
    probe.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the first frame")
    probe.add_argument("--backend", choices=["auto", "gstreamer", "opencv"], default="auto",
                       help="what decodes it: GStreamer, OpenCV, or auto (GStreamer where installed)")
    probe.set_defaults(func=run_probe)


def run_probe(args) -> int:
    from pipelines import open_source

    source = open_source(args.source, backend=args.backend, reconnect=False, start_timeout=args.timeout)
    info = source.start()
    try:
        frame = source.read(args.timeout)
        print(f"source   {args.source}")
        print(f"kind     {source.spec.kind} ({'live' if source.spec.live else 'file'})")
        print(f"size     {info.width}x{info.height}")
        print(f"fps      {info.fps if info.fps is not None else 'variable/unknown'}")
        print(f"caps     {info.caps}")
        if frame is not None:
            pts = f"{frame.pts_ns / 1e9:.6f} s" if frame.pts_ns is not None else "none"
            age = (time.monotonic_ns() - frame.capture_ns) / 1e6
            print(f"first    index {frame.index}, pts {pts}, captured {age:.1f} ms ago")
    finally:
        source.stop()
    return 0
