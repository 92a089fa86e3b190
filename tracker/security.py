"""CurveZMQ keys and socket security: encryption + client authentication, loopback checks, ipc perms."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from .errors import SamtrackError

log = logging.getLogger(__name__)


class KeyFileError(SamtrackError):
    """A key file or directory that is missing or unreadable."""

    code = "bad_key"


def generate_keys(directory: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (secret, mode 0600) into directory (created 0700)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    public, secret = (Path(p) for p in zmq.auth.create_certificates(str(d), name))
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret


def authorize_client(public_key: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Copy a client's public key file into the allowed-clients directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Path(shutil.copy(public_key, d))


def load_keypair(path: str | os.PathLike) -> tuple[bytes, bytes | None]:
    """(public, secret) from a key file; secret is None for a public-only file."""
    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as e:
        raise KeyFileError(f"cannot read key file {path}: {e}") from e


@dataclass(frozen=True)
class CurveServer:
    """The daemon's secret key file and the directory of client public keys allowed to connect."""

    secret_key_file: str
    authorized_clients: str

    def start(self, ctx: zmq.Context) -> ThreadAuthenticator:
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=str(self.authorized_clients))
        return auth

    def apply(self, sock: zmq.Socket) -> None:
        public, secret = load_keypair(self.secret_key_file)
        if secret is None:
            raise KeyFileError(f"{self.secret_key_file} holds no secret key (use the .key_secret file)")
        sock.curve_publickey, sock.curve_secretkey, sock.curve_server = public, secret, True


@dataclass(frozen=True)
class CurveClient:
    """A client's own key pair file and the daemon's public key file."""

    secret_key_file: str
    server_public_key_file: str

    def apply(self, sock: zmq.Socket) -> None:
        public, secret = load_keypair(self.secret_key_file)
        server_public, _ = load_keypair(self.server_public_key_file)
        if secret is None:
            raise KeyFileError(f"{self.secret_key_file} holds no secret key (use the .key_secret file)")
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public


def is_loopback(endpoint: str) -> bool:
    """Whether an endpoint is reachable only from this machine (ipc, inproc, loopback tcp)."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[6:].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or interface: assume reachable from elsewhere


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
