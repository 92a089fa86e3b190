"""`samtrack view`: the browser viewer against a running daemon."""

from __future__ import annotations

import argparse


def add_view_parser(sub) -> None:
    p = sub.add_parser("view", help="serve a web page showing the live masks; click on it to prompt",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--results", default="tcp://127.0.0.1:5555", help="the daemon's results (PUB) endpoint")
    p.add_argument("--commands", default="tcp://127.0.0.1:5556", help="the daemon's commands endpoint")
    p.add_argument("--stream", help="show only this stream (default: whatever the results socket carries)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; beyond loopback a token is required")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (0: any free port)")
    p.add_argument("--token", help="token the page's URL must carry (generated when --host is not loopback)")
    p.add_argument("--client-key", help="CurveZMQ: this client's .key_secret file (daemon with [auth] curve)")
    p.add_argument("--server-key", help="CurveZMQ: the daemon's public .key file")
    p.set_defaults(func=run_view)


def run_view(args) -> int:
    import asyncio
    import secrets
    import signal

    from .errors import SamtrackError
    from .security import CurveClient
    from .viewer import ViewerSettings, needs_token, serve

    if bool(args.client_key) != bool(args.server_key):
        raise SamtrackError("--client-key and --server-key go together (both files from `samtrack keys generate`)")
    token = args.token
    if token is None and needs_token(args.host):
        token = secrets.token_urlsafe(16)
    settings = ViewerSettings(results=args.results, commands=args.commands, stream=args.stream, host=args.host,
                              port=args.port, token=token,
                              curve=CurveClient(args.client_key, args.server_key) if args.client_key else None)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(settings, stop)
        except OSError as e:
            raise SamtrackError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}; "
                                "pick another --port or --host") from e

    asyncio.run(main())
    return 0
