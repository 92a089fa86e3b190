"""`samtrack demo`: the daemon on the built-in test source, a client that clicks the ball it sees in a
preview, then per-frame results and latency for a few seconds; everything stopped cleanly after."""

from __future__ import annotations

import sys
import time

import numpy as np

from .args import HelpFormatter, image_size


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the daemon on a test pattern and track the ball for a few seconds",
                       formatter_class=HelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_t", help="model name (see `samtrack weights list`)")
    p.add_argument("--image-size", type=image_size, default=256, help="model input size: small, so a CPU keeps up")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to print results")
    p.add_argument("--fps", type=int, default=10, help="test source frame rate")
    p.add_argument("--results", default="tcp://127.0.0.1:5565", help="the demo daemon's PUB endpoint")
    p.add_argument("--commands", default="tcp://127.0.0.1:5566", help="the demo daemon's ROUTER endpoint")
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    import cv2

    from ..client import Client, Result, Subscriber
    from ..client.spawn import start_daemon
    from ..models import weights
    from ..percentiles import percentiles

    if weights.resolve_checkpoint(args.model, None) is None:
        print("=" * 78)
        print(weights.random_weights_warning(args.model))
        print("=" * 78, flush=True)
    try:
        daemon = start_daemon(["--source", f"test:?pattern=ball&width=320&height=240&fps={args.fps}",
                               "--model", args.model, "--image-size", str(args.image_size), "--preview-every", "1",
                               "--stream", "demo", "--no-metrics"], endpoints=(args.results, args.commands),
                              need_frame=False, quiet=False)
    except RuntimeError as e:
        print(f"samtrack demo: {e}", file=sys.stderr)
        return 1
    try:
        with Client(args.commands, timeout=60.0) as client, Subscriber(args.results, "demo", previews=True) as sub:
            while True:  # click the ball in the first preview we get
                msg = sub.recv(30.0)
                if msg is None:
                    print("no preview from the daemon", file=sys.stderr)
                    return 1
                if not isinstance(msg, Result):
                    header, jpeg = msg
                    gray = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
                    ys, xs = np.nonzero(gray > 200)
                    if len(xs):
                        break
            point = [float(xs.mean()), float(ys.mean())]
            r = client.add_points(1, [point], [1], frame=header["frame"])
            print(f"clicked the ball at ({point[0]:.0f}, {point[1]:.0f}) on frame {header['frame']}: "
                  f"object 1 area {r['object']['area']}, {r['retracked']} frame(s) re-tracked since", flush=True)
            lat, t_end = [], time.monotonic() + args.seconds
            while time.monotonic() < t_end:
                msg = sub.recv(10.0)
                if msg is None:
                    break
                if isinstance(msg, Result):
                    lat.append(msg.latency_ms())
                    o = next((o for o in msg.header["objects"] if o["id"] == 1), None)
                    print(f"frame {msg.frame:5d}  glass-to-mask {lat[-1]:7.1f} ms  "
                          f"object 1: {o['area'] if o else '-'} px, bbox {o['bbox'] if o else '-'}", flush=True)
            if lat:
                p = percentiles(lat)
                print(f"{p.n} frames; latency p50 {p.p50:.0f} ms, max {p.max:.0f} ms; results lost {sub.gaps}")
            print(f"daemon stats: {client.stats()['fps']:.1f} fps")
    except RuntimeError as e:
        print(f"samtrack demo: {e}", file=sys.stderr)
        return 1
    finally:
        code = daemon.stop()
        print(f"daemon exited with code {code}")
    return 0 if code == 0 else 1
