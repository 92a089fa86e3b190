"""Binding the daemon's sockets: private ipc files, and a warning for an exposed endpoint without auth."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import zmq

from ..protocol.curve import is_loopback

log = logging.getLogger(__name__)


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
    with private_umask():
        sock.bind(endpoint)
    if endpoint.startswith("ipc://"):
        os.chmod(endpoint[len("ipc://"):], 0o600)
