"""Which web pages may use the viewer: its own, and the origins the user names. A browser sends `Origin`
with every WebSocket handshake and cross-origin request; a page from another site (or another port) gets
403, so it can neither watch the previews nor send prompts. On loopback, the `Host` header must name a
loopback address too: a site whose name is rebound to 127.0.0.1 (DNS rebinding) is refused as well."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def normalize_origin(origin: str) -> str:
    """scheme://host[:port] in lower case, default ports left out: how browsers write `Origin`."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port], e.g. http://192.0.2.5:8080")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port not in (None, default) else ""
    return f"{parts.scheme}://{host}{port}"


@dataclass(frozen=True)
class OriginPolicy:
    """port: the one the viewer listens on; loopback_only: it is bound to loopback (so every legitimate Host
    names loopback); allowed: further origins, normalized; bound: the address it listens on."""

    port: int
    loopback_only: bool
    allowed: frozenset[str] = frozenset()
    bound: str = "127.0.0.1"

    @property
    def names(self) -> frozenset[str]:
        """Host names a page of this viewer is loaded under, when it listens on loopback."""
        return LOOPBACK_NAMES | {self.bound.strip("[]").lower()}

    def refusal(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused, or None. A reverse proxy in front of a loopback viewer
        passes its own Host: the hosts of the allowed origins are accepted too."""
        name, port = _split_host(host or "")
        proxied = any(urlsplit(o).netloc == (host or "").lower() for o in self.allowed)
        if self.loopback_only and not proxied and (name not in self.names or port != self.port):
            shown = f"[{self.bound}]" if ":" in self.bound else self.bound
            return (f"Host {host!r} is not this viewer's loopback address ({shown}:{self.port}): open the viewer "
                    "by its address, or name the address a proxy serves it under with --allow-origin")
        if origin is None:  # not a browser page (a script, curl): nothing to protect against
            return None
        try:
            got = normalize_origin(origin)
        except ValueError:
            return f"Origin {origin!r} is not allowed to use this viewer"
        try:  # the page's own origin: this viewer's, plain HTTP; behind a proxy only the allowed ones (their scheme)
            own = None if proxied else normalize_origin(f"http://{host}")
        except ValueError:
            own = None
        if got == own or got in self.allowed:
            return None
        return (f"a page from {origin} may not use this viewer; start `samtrack view --allow-origin {origin}` "
                "to allow it")


def _split_host(host: str) -> tuple[str, int | None]:
    """('127.0.0.1', 8765) of 'Host: 127.0.0.1:8765', ('::1', 8765) of '[::1]:8765'."""
    parts = urlsplit(f"//{host}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port
