"""`samtrack broker`: many daemons behind one results endpoint and one commands endpoint."""

from __future__ import annotations


def add_broker_parser(sub) -> None:
    from ..paths import existing_dir
    from ..protocol.base import DEFAULT_BROKER_COMMANDS, DEFAULT_BROKER_RESULTS
    from .args import KEY_FILE, add_log_level

    p = sub.add_parser("broker", help="join several daemons into one results and one commands endpoint")
    p.add_argument("--daemon", nargs="+", action="append", required=True, metavar="ENDPOINT",
                   help="RESULTS COMMANDS [STREAM,STREAM...]: a daemon's endpoints, and its streams if they should be "
                        "known before it first answers (repeat for each daemon)")
    p.add_argument("--results", default=DEFAULT_BROKER_RESULTS,
                   help="XPUB endpoint clients subscribe to (not a daemon's default 5555: both may run on one host)")
    p.add_argument("--commands", default=DEFAULT_BROKER_COMMANDS,
                   help="ROUTER endpoint clients send requests to (not a daemon's default 5556)")
    p.add_argument("--server-secret-key", type=KEY_FILE, help="CurveZMQ for clients: the broker's .key_secret file")
    p.add_argument("--authorized-clients", type=existing_dir("allowed clients' directory"),
                   help="CurveZMQ for clients: directory of allowed client public keys")
    p.add_argument("--client-key", type=KEY_FILE, help="CurveZMQ to the daemons: the broker's own .key_secret file")
    p.add_argument("--server-key", type=KEY_FILE, help="CurveZMQ to the daemons: their public .key file")
    add_log_level(p, "INFO")
    p.set_defaults(func=run_broker)


def run_broker(args) -> int:
    import logging
    import signal

    from ..broker.broker import Broker, BrokerSettings
    from ..errors import SamtrackError
    from ..protocol.curve import CurveClient, CurveServer

    logging.getLogger().setLevel(args.log_level)
    if bool(args.server_secret_key) != bool(args.authorized_clients):
        raise SamtrackError("--server-secret-key and --authorized-clients go together (CurveZMQ for clients)")
    front = CurveServer(args.server_secret_key, args.authorized_clients) if args.server_secret_key else None
    back = CurveClient.from_options(args.client_key, args.server_key)
    daemons = []
    for d in args.daemon:
        if len(d) not in (2, 3):
            raise SamtrackError(f"--daemon {' '.join(d)}: give RESULTS COMMANDS [STREAM,STREAM...]")
        daemons.append((d[0], d[1], d[2].split(",") if len(d) == 3 else []))
    broker = Broker(BrokerSettings(args.results, args.commands, daemons, front, back))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: broker.stop())
    broker.run()
    return 0
