"""Serving requests on a ROUTER socket, the same for a daemon and a broker: the routing envelope of a message,
the stream a request is for, and ping/stats about every stream merged into one result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from . import messages
from .base import ProtocolError

OVERVIEW_OPS = frozenset({"ping", "stats"})  # naming no stream on a server of several: about every stream


def split_envelope(msg: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(what goes back in front of the reply, the request's frames) of a message read from a ROUTER socket:
    the peer's identity, and a REQ client's empty delimiter (a DEALER's lone empty frame reads so too)."""
    identity, parts = msg[:1], msg[1:]
    if parts and parts[0] == b"":
        return [*identity, b""], parts[1:]
    return identity, parts


def route(op: str, stream: str | None, served: Sequence[str], rid, who: str = "this daemon",
          unknown_hint: str = "") -> str | None:
    """The stream a request is for: the one it names, else the only one served; None for ping/stats about
    every stream of a server with several. ProtocolError unknown_stream / stream_required otherwise."""
    names = ", ".join(served) or "no stream yet"
    if stream is not None:
        if stream not in served:
            raise ProtocolError("unknown_stream", f"no stream {stream!r} here; {who} serves {names}{unknown_hint}",
                                rid)
        return stream
    if len(served) == 1:
        return served[0]
    if op in OVERVIEW_OPS:
        return None
    raise ProtocolError("stream_required", f"{op} needs args.stream: {who} serves {names}", rid)


@dataclass
class Overview:
    """ping or stats naming no stream: each stream's own result, merged (from a daemon's streams, or from
    every daemon behind a broker)."""

    op: str
    per_stream: dict[str, dict] = field(default_factory=dict)

    def add(self, result: dict) -> None:
        """One stream's result, or a server's overview of several."""
        self.per_stream.update(result["per_stream"] if "per_stream" in result else {result["stream"]: result})

    def result(self, unrouted_requests: int, unrouted_errors: dict[str, int]) -> dict:
        """The merged result; stats adds the totals (requests that named no stream served count there only)."""
        if self.op == "ping":
            return messages.overview_result(self.per_stream)
        return messages.stats_overview_result(self.per_stream, unrouted_requests, unrouted_errors)
