"""Client subcommands: `samtrack prompt`, `remove`, `reset`, `watch`, `objects`, `stats`."""

from __future__ import annotations

import json
import time

from ..paths import existing_file
from .args import KEY_FILE, VIDEO_TO_WRITE, box, pair

# How long a command waits for a daemon's socket to accept its connection before saying none runs there: at once on
# loopback, a round trip elsewhere; a busy daemon accepts at once too (only its reply waits for its step).
CONNECT_TIMEOUT_S = 3.0


def _frame(text: str) -> int | str:
    return "latest" if text == "latest" else int(text)


def add_curve_options(p) -> None:
    """--client-key/--server-key: for a daemon with [auth] curve = true (files from `samtrack keys generate`)."""
    p.add_argument("--client-key", type=KEY_FILE,
                   help="CurveZMQ: this client's .key_secret file (daemon with [auth] curve)")
    p.add_argument("--server-key", type=KEY_FILE, help="CurveZMQ: the daemon's public .key file")


def _curve(args):
    from ..protocol.curve import CurveClient

    return CurveClient.from_options(args.client_key, args.server_key)


def connect(args):
    """A Client of the daemon at --commands (for --stream, with the CurveZMQ keys given); ConnectionError, one line,
    when no daemon listens there."""
    from ..client import Client
    from ..client.commands import listening

    if not listening(args.commands, CONNECT_TIMEOUT_S):
        raise ConnectionError(f"nothing answers at {args.commands}: is a daemon running at {args.commands}? Start "
                              "one (samtrack serve), or name its endpoint with --commands")
    return Client(args.commands, timeout=args.timeout, curve=_curve(args), stream=args.stream)


def add_client_parsers(sub) -> None:
    from ..protocol import DEFAULT_COMMANDS, DEFAULT_RESULTS

    p = sub.add_parser("prompt", help="add points, a box or a mask for an object")
    p.add_argument("--commands", default=DEFAULT_COMMANDS, help="the daemon's ROUTER endpoint")
    p.add_argument("--object", type=int, required=True, help="the object's id (a new id adds an object)")
    p.add_argument("--point", type=pair, action="append", default=[], help="positive click X,Y (repeatable)")
    p.add_argument("--negative", type=pair, action="append", default=[], help="negative click X,Y (repeatable)")
    p.add_argument("--box", type=box, help="X0,Y0,X1,Y1")
    p.add_argument("--mask", type=existing_file("mask image"),
                   help="mask image file (nonzero pixels are the object), the frame's size")
    p.add_argument("--frame", type=_frame, default="latest", help="frame index you saw, or latest")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the reply (a prompt on a past frame re-tracks from there)")
    p.add_argument("--stream", help="the stream to prompt (needed when the daemon has several)")
    add_curve_options(p)
    p.set_defaults(func=run_prompt)

    r = sub.add_parser("remove", help="stop tracking an object")
    r.add_argument("--object", type=int, required=True, help="the object's id")
    s = sub.add_parser("reset", help="forget every object of a stream (frame numbers go on)")
    for q, op in ((r, "remove_object"), (s, "reset")):
        q.add_argument("--commands", default=DEFAULT_COMMANDS, help="the daemon's ROUTER endpoint")
        q.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply")
        q.add_argument("--stream", help="the stream (needed when the daemon has several)")
        add_curve_options(q)
        q.set_defaults(func=lambda a, op=op: _print_request(a, op))

    w = sub.add_parser("watch", help="print per-frame results and latency, or write an overlay video")
    w.add_argument("--results", default=DEFAULT_RESULTS, help="the daemon's PUB endpoint")
    w.add_argument("--stream", help="only this stream's results (default: every stream's)")
    w.add_argument("--frames", type=int, help="stop after N results")
    w.add_argument("--duration", type=float, help="stop after S seconds")
    w.add_argument("--video", type=VIDEO_TO_WRITE,
                   help="write masks over the daemon's previews to this file (needs --preview-every)")
    w.add_argument("--timeout", type=float, default=10.0, help="give up when no result comes for S seconds")
    add_curve_options(w)
    w.set_defaults(func=run_watch)

    for name, op in (("objects", "list_objects"), ("stats", "stats")):
        q = sub.add_parser(name, help=f"print the daemon's {name}")
        q.add_argument("--commands", default=DEFAULT_COMMANDS, help="the daemon's ROUTER endpoint")
        q.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply")
        q.add_argument("--stream", help="this stream's only (default: the daemon's only one" +
                       (", or every stream and the totals)" if name == "stats" else ")"))
        add_curve_options(q)
        q.set_defaults(func=lambda a, op=op: _print_request(a, op))


def _print_request(args, op: str) -> int:
    with connect(args) as c:
        print(json.dumps(_rounded(c.request(op, {"object": args.object} if op == "remove_object" else None)),
                         indent=2))
    return 0


def _rounded(value):
    """A reply with its floats to 3 decimals (milliseconds, fps, scores): what a person reads."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def run_prompt(args) -> int:
    kinds = sum([bool(args.point or args.negative), args.box is not None, args.mask is not None])
    if kinds == 0 or (args.mask is not None and kinds > 1):
        raise SystemExit("samtrack prompt: give --point/--negative, --box (optionally with points), or --mask")
    with connect(args) as c:
        if args.mask is not None:
            import cv2

            img = cv2.imread(args.mask, cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise SystemExit(f"samtrack prompt: cannot read mask image {args.mask}")
            result = c.add_mask(args.object, img > 0, frame=args.frame)
        else:
            points = args.point + args.negative
            labels = [1] * len(args.point) + [0] * len(args.negative)
            if args.box is not None:
                result = c.add_box(args.object, args.box, frame=args.frame, points=points or None,
                                   labels=labels or None)
            else:
                result = c.add_points(args.object, points, labels, frame=args.frame)
    print(json.dumps(_rounded(result), indent=2))
    return 0


def run_watch(args) -> int:
    import zmq

    from ..client import Result, StreamEnd, Subscriber
    from ..client.commands import listening
    from ..errors import SamtrackError
    from ..percentiles import percentiles

    if not listening(args.results, CONNECT_TIMEOUT_S, zmq.SUB):
        raise ConnectionError(f"nothing answers at {args.results}: is a daemon running at {args.results}? Start "
                              "one (samtrack serve), or name its endpoint with --results")
    sink, n, t_end = None, 0, time.monotonic() + args.duration if args.duration else None
    latencies = []
    with Subscriber(args.results, args.stream, previews=bool(args.video), curve=_curve(args)) as sub:
        masks_by_frame: dict[int, Result] = {}
        while (args.frames is None or n < args.frames) and (t_end is None or time.monotonic() < t_end):
            msg = sub.recv(args.timeout)
            if msg is None:
                raise SamtrackError(f"no result from {args.results} for {args.timeout:.0f} s: the daemon runs, but "
                                    f"{'stream ' + repr(args.stream) if args.stream else 'no stream'} publishes "
                                    "(its source down or ended? `samtrack stats` says)")
            if isinstance(msg, StreamEnd):
                print(f"stream ended ({msg.header['reason']}) after frame {msg.header['frame']}")
                break
            if isinstance(msg, Result):
                n += 1
                latencies.append(msg.latency_ms())
                objs = "  ".join(f"#{o['id']} {'present' if o['present'] else 'absent'} "
                                 f"area {o['area']} bbox {o['bbox']}" for o in msg.header["objects"])
                print(f"frame {msg.frame:6d}  latency {latencies[-1]:7.1f} ms  "
                      f"step {msg.header['timings_ms'].get('step', 0):7.1f} ms  {objs or '(no objects)'}", flush=True)
                masks_by_frame = {msg.frame: msg}
            elif args.video:
                sink = _write_preview(msg, masks_by_frame, sink, args.video)
    if sink is not None:
        sink.close()
        print(f"wrote {sink.frames} frames to {args.video}")
    elif args.video:
        print(f"wrote nothing to {args.video}: no preview came (start the daemon with --preview-every N)")
    if latencies:
        lat = percentiles(latencies)
        print(f"{n} results, glass-to-mask latency p50 {lat.p50:.1f} ms, p99 {lat.p99:.1f} ms, lost {sub.gaps}")
    return 0


def _write_preview(msg, masks_by_frame, sink, path):
    import cv2
    import numpy as np

    from pipelines.overlay import OverlayObject, draw_overlay
    from pipelines.sinks import VideoFileSink

    header, jpeg = msg
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    result = masks_by_frame.get(header["frame"])
    objects = []
    if result is not None:
        scores = {o["id"]: o["score"] for o in result.header["objects"]}
        objects = [OverlayObject(i, m, scores[i]) for i, m in result.masks.items()]
    if sink is None:
        sink = VideoFileSink(path, header["width"], header["height"], 10.0)
    sink.push(draw_overlay(np.ascontiguousarray(image), objects))
    return sink
