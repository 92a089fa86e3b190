"""CurveZMQ keys and socket security: key files, the server's and a client's side, loopback endpoints."""

from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ..errors import SamtrackError


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


def _secret_pair(path: str) -> tuple[bytes, bytes]:
    public, secret = load_keypair(path)
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


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
        sock.curve_publickey, sock.curve_secretkey = _secret_pair(self.secret_key_file)
        sock.curve_server = True


@dataclass(frozen=True)
class CurveClient:
    """A client's own key pair file and the daemon's public key file."""

    secret_key_file: str
    server_public_key_file: str

    @classmethod
    def from_options(cls, client_key: str | None, server_key: str | None) -> CurveClient | None:
        """From a command line's --client-key/--server-key (both or neither)."""
        if bool(client_key) != bool(server_key):
            raise KeyFileError("--client-key and --server-key go together (both files from `samtrack keys generate`)")
        return cls(client_key, server_key) if client_key else None

    def apply(self, sock: zmq.Socket) -> None:
        public, secret = _secret_pair(self.secret_key_file)
        server_public, _ = load_keypair(self.server_public_key_file)
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
