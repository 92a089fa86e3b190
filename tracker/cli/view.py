"""`samtrack view`: the browser viewer against a running daemon."""

from __future__ import annotations

from ..protocol.base import DEFAULT_COMMANDS, DEFAULT_RESULTS
from .args import HelpFormatter
from .client import add_curve_options


def add_view_parser(sub) -> None:
    p = sub.add_parser("view", help="serve a web page showing the live masks; click on it to prompt",
                       formatter_class=HelpFormatter)
    p.add_argument("--results", default=DEFAULT_RESULTS, help="the daemon's results (PUB) endpoint")
    p.add_argument("--commands", default=DEFAULT_COMMANDS, help="the daemon's commands endpoint")
    p.add_argument("--stream", help="show only this stream (default: whatever the results socket carries)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; beyond loopback a token is required")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (0: any free port)")
    p.add_argument("--token", help="token the page's URL must carry (generated when --host is not loopback)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="another web origin whose pages may use the viewer (scheme://host[:port]; repeatable); by "
                        "default only the viewer's own page may")
    add_curve_options(p)
    p.set_defaults(func=run_view)


def run_view(args) -> int:
    import asyncio
    import secrets
    import signal

    from ..errors import SamtrackError
    from ..protocol.curve import CurveClient
    from ..viewer.origin import normalize_origin
    from ..viewer.server import ViewerSettings, needs_token, serve

    token = args.token
    if token is None and needs_token(args.host):
        token = secrets.token_urlsafe(16)
    try:
        allowed = frozenset(normalize_origin(o) for o in args.allow_origin)
    except ValueError as e:
        raise SamtrackError(f"--allow-origin: {e}") from e
    settings = ViewerSettings(results=args.results, commands=args.commands, stream=args.stream, host=args.host,
                              port=args.port, token=token,
                              curve=CurveClient.from_options(args.client_key, args.server_key), allow_origins=allowed)

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
