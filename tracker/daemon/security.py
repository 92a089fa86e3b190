"""Binding the daemon's (and the broker's) sockets: private ipc files, a warning for an exposed endpoint
without auth, a clear error for an endpoint that cannot be bound, and the limits every bound socket keeps."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager

import zmq

from ..errors import SamtrackError
from ..protocol.curve import is_loopback

log = logging.getLogger(__name__)

# Requests queued per connected client before ZeroMQ stops reading from it: a daemon serves 32 a turn, so a
# few turns' worth; with MAXMSGSIZE this bounds what one client can park in memory.
ROUTER_HWM = 100
MAX_INBOUND_BYTES = 64 << 20  # larger messages are dropped by ZeroMQ itself (memory safety net)
# Messages queued per subscriber before PUB (or the broker's XPUB) drops for it: results are only useful
# fresh, so a slow subscriber loses old frames (it sees a gap in "seq") instead of slowing anyone.
PUB_HWM = 20
# A subscription is a topic prefix ("results.<stream>", 72 bytes at most): anything longer from a
# subscriber is not one, and ZeroMQ drops that peer.
MAX_SUBSCRIPTION_BYTES = 1024


class BindError(SamtrackError):
    """An endpoint that cannot be bound (in use, no such address, no permission)."""

    code = "cannot_bind"


@contextmanager
def private_umask():
    """ipc:// socket files created while this is active are readable by their owner only."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def bind(sock: zmq.Socket, endpoint: str, curve: bool) -> None:
    """Bind, with ipc files made private and a warning for an exposed endpoint without auth."""
    if not is_loopback(endpoint) and not curve:
        log.warning("SECURITY: %s is reachable from other machines and has no authentication; anyone there "
                    "can read masks and send prompts. Enable [auth] curve = true.", endpoint)
    try:
        with private_umask():
            sock.bind(endpoint)
    except zmq.ZMQError as e:
        raise BindError(f"cannot bind {endpoint}: {e.strerror}; is another samtrack daemon or broker using it? "
                        "Pick another endpoint (--results/--commands, [endpoints])") from e
    if endpoint.startswith("ipc://"):
        os.chmod(endpoint[len("ipc://"):], 0o600)


def check_free(endpoints: list[str], metrics: tuple[str, int] | None = None) -> None:
    """Before anything slow (a model loading): BindError, one line, for a tcp:// endpoint or the metrics port that
    something already listens on, or an ipc:// one a live process serves (ZeroMQ would take its file over).
    Addresses this cannot resolve (an interface name) are left to the bind itself."""
    for endpoint in endpoints:
        host, _, port = endpoint[len("tcp://"):].rpartition(":")
        if endpoint.startswith("tcp://") and port.isdigit():  # (a wildcard port, or a typo: for the bind to say)
            _check_port(host, int(port), f"{endpoint} is in use", "--results/--commands, [endpoints]")
        elif endpoint.startswith("ipc://"):
            _check_ipc(endpoint)
    if metrics is not None and metrics[1] != 0:
        _check_port(metrics[0], metrics[1], f"the metrics port {metrics[0]}:{metrics[1]} is in use",
                    "--metrics-port (0: any free one), --no-metrics, [metrics] port")


def _check_port(host: str, port: int, what: str, instead: str) -> None:
    host = "" if host in ("*", "") else host.strip("[]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError):
        return  # an interface name (tcp://eth0:5555): ZeroMQ resolves it when it binds
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ and the HTTP server bind
        try:
            probe.bind(address)
        except OSError as e:
            raise BindError(f"{what} ({e.strerror}): is another samtrack daemon running? Pick another with "
                            f"{instead}") from None


def _check_ipc(endpoint: str) -> None:
    path = endpoint[len("ipc://"):]
    if not os.path.exists(path):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return  # a file left by a process that is gone: ZeroMQ replaces it
    raise BindError(f"{endpoint} is in use by a running process: is another samtrack daemon running? Pick another "
                    "with --results/--commands, [endpoints]")
