"""`samtrack broker`: many daemons (one per GPU, per host) behind one results endpoint and one commands
endpoint. Results go through libzmq's own proxy (XSUB -> XPUB, subscriptions forwarded upstream);
commands are routed by stream name, learned from each daemon's ping. A daemon that stops answering has
its streams' requests answered `stream_unavailable`; the others are unaffected."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import recv_monitor_message

from .. import protocol as P
from ..daemon.security import MAX_INBOUND_BYTES, MAX_SUBSCRIPTION_BYTES, PUB_HWM, ROUTER_HWM, bind
from ..protocol.curve import CurveClient, CurveServer
from ..protocol.routing import OVERVIEW_OPS, Overview, route, split_envelope

log = logging.getLogger(__name__)

PING_EVERY_S = 1.0  # a daemon is pinged this long after its last ping was answered: learns its streams
# A forwarded request without a reply after this long is answered stream_unavailable: a prompt on a past
# frame re-tracks up to a window of frames (tens of seconds on a CPU at 512 px, more with a long window).
REQUEST_TIMEOUT_S = 120.0
# A daemon still connected but silent this long (its ping unanswered) is taken for hung. Longer than any
# request it may be busy with, so a busy daemon is never mistaken for a dead one; a dead one is noticed at
# once anyway (its connection drops: socket monitor events).
HUNG_AFTER_S = 1.5 * REQUEST_TIMEOUT_S
POLL_MS = 100  # the loop wakes at least this often for pings and timeouts
# Requests waiting for a daemon's reply, all clients together: beyond this a request is refused at once
# (too_many_requests) instead of growing the broker's memory.
MAX_PENDING = 4096
STOP_TIMEOUT_S = 5.0  # at shutdown, how long the results proxy may take to stop


@dataclass(frozen=True)
class BrokerSettings:
    results: str  # XPUB the clients subscribe to
    commands: str  # ROUTER the clients send requests to
    daemons: list[tuple[str, str, list[str]]]  # each daemon's results and commands endpoints, its streams if known
    front_curve: CurveServer | None = None  # clients must authenticate to the broker
    back_curve: CurveClient | None = None  # the broker authenticates to the daemons


@dataclass
class Backend:
    """One daemon as the broker sees it."""

    results: str
    commands: str
    socket: zmq.Socket
    monitor: zmq.Socket  # the DEALER's connection events
    streams: list[str] = field(default_factory=list)  # as configured, then as its last ping said
    connected: bool = False
    answered: bool = False  # it replied since it (re)connected: not alive before
    ping: int | None = None  # the one ping in flight (never more: they would pile up in a busy daemon)
    ping_sent: float = 0.0
    ping_answered: float = 0.0

    def alive(self, now: float) -> bool:
        return self.connected and self.answered and not (self.ping is not None and now - self.ping_sent >= HUNG_AFTER_S)


@dataclass
class Pending:
    """A request forwarded to a daemon, waiting for its reply."""

    client: list[bytes] | None  # routing envelope back to the client (identity, a REQ delimiter); None: a ping
    rid: str | int | None  # the client's request id
    backend: Backend
    deadline: float
    gather: Gather | None = None  # part of a ping/stats sent to every daemon


@dataclass
class Gather:
    """ping/stats naming no stream on a fleet: every live daemon's answer, merged into one reply."""

    client: list[bytes]
    rid: str | int | None
    waiting: int
    overview: Overview


class Broker:
    """Runs until stop() (a plain flag: safe from a signal handler)."""

    def __init__(self, settings: BrokerSettings):
        self.settings = settings
        self._ctx = zmq.Context()
        self._auth = settings.front_curve.start(self._ctx) if settings.front_curve else None
        self._stopped = False
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        self._front = self._socket(zmq.ROUTER, server=True)
        self._front.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES)
        self._front.setsockopt(zmq.RCVHWM, ROUTER_HWM)
        self.backends = [self._backend(r, c, streams) for r, c, streams in settings.daemons]
        self._unrouted_requests = 0
        self._unrouted_errors: dict[str, int] = {}
        self._claims_warned: set[tuple[str, tuple[str, ...]]] = set()

    def _socket(self, kind: int, server: bool) -> zmq.Socket:
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        curve = self.settings.front_curve if server else self.settings.back_curve
        if curve is not None:
            curve.apply(s)
        return s

    def _backend(self, results: str, commands: str, streams: list[str]) -> Backend:
        sock = self._socket(zmq.DEALER, server=False)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # nothing queues for a daemon that is not connected: it is refused
        sock.setsockopt(zmq.SNDHWM, ROUTER_HWM)  # nor more than a daemon's own queue for a client holds
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES)
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        return Backend(results, commands, sock, monitor, list(streams))

    def stop(self) -> None:
        self._stopped = True

    def run(self) -> None:
        """Bind (BindError naming the endpoint when it cannot), then serve until stop()."""
        s = self.settings
        xpub, xsub = self._socket(zmq.XPUB, server=True), self._socket(zmq.XSUB, server=False)
        # Same limits as a daemon's PUB: a slow subscriber loses old results instead of buffering them.
        xpub.setsockopt(zmq.SNDHWM, PUB_HWM)
        xpub.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
        xsub.setsockopt(zmq.RCVHWM, PUB_HWM)
        control = self._ctx.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        control.setsockopt(zmq.SNDTIMEO, int(STOP_TIMEOUT_S * 1000))
        address = f"inproc://broker-control-{id(self)}"
        control.bind(address)
        proxy: threading.Thread | None = None
        try:
            bind(xpub, s.results, curve=s.front_curve is not None)
            bind(self._front, s.commands, curve=s.front_curve is not None)
            for b in self.backends:
                xsub.connect(b.results)
                b.socket.connect(b.commands)
            proxy = threading.Thread(target=self._proxy, args=(xpub, xsub, address), name="results-proxy",
                                     daemon=True)
            proxy.start()
            log.info("broker: results on %s, commands on %s, for %d daemon(s)", s.results, s.commands,
                     len(self.backends))
            self._loop()
        finally:
            stopped = self._stop_proxy(proxy, control, xpub, xsub)
            for b in self.backends:
                b.socket.disable_monitor()
                b.monitor.close(0)
                b.socket.close(0)
            self._front.close(0)
            if self._auth is not None:
                self._auth.stop()
            if stopped:  # a context cannot end while the proxy still holds its sockets
                self._ctx.term()

    def _stop_proxy(self, proxy: threading.Thread | None, control: zmq.Socket, xpub: zmq.Socket,
                    xsub: zmq.Socket) -> bool:
        """Ends the results proxy (or closes its sockets when it never started); False if it would not stop."""
        if proxy is None:
            for sock in (xpub, xsub, control):
                sock.close(0)
            return True
        try:
            control.send(b"TERMINATE")
        except zmq.Again:
            log.warning("the results proxy did not take the stop request")
        proxy.join(STOP_TIMEOUT_S)
        control.close(0)
        return not proxy.is_alive()

    def _proxy(self, xpub: zmq.Socket, xsub: zmq.Socket, address: str) -> None:
        """libzmq's proxy moves results down and subscriptions up until TERMINATE on the control socket."""
        control = self._ctx.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        control.connect(address)
        try:
            zmq.proxy_steerable(xpub, xsub, None, control)
        finally:
            for sock in (xpub, xsub, control):
                sock.close(0)

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._front, zmq.POLLIN)
        for b in self.backends:
            poller.register(b.socket, zmq.POLLIN)
            poller.register(b.monitor, zmq.POLLIN)
        by_socket = {b.socket: b for b in self.backends}
        by_monitor = {b.monitor: b for b in self.backends}
        while not self._stopped:
            for sock, _ in poller.poll(POLL_MS):
                if sock is self._front:
                    self._from_client(self._front.recv_multipart())
                elif sock in by_monitor:
                    self._connection(by_monitor[sock], recv_monitor_message(sock)["event"])
                else:
                    self._from_daemon(by_socket[sock], sock.recv_multipart())
            self._ping_and_expire(time.monotonic())

    def _connection(self, backend: Backend, event: int) -> None:
        """A daemon's connection came up or dropped; requests waiting on a dropped one are answered. Either way
        it is not alive until it answers on this connection."""
        backend.connected = event == zmq.EVENT_CONNECTED
        backend.answered, backend.ping = False, None
        log.info("daemon at %s %s", backend.commands, "connected" if backend.connected else "disconnected")
        if not backend.connected:
            self._fail_pending(lambda p: p.backend is backend,
                               f"the daemon at {backend.commands} disconnected; the request may or may not have "
                               "been applied")

    # ---- clients ----------------------------------------------------------------------------
    def _from_client(self, msg: list[bytes]) -> None:
        envelope, parts = split_envelope(msg)
        rid = None
        try:
            rid, op, args, frames = P.parse_request(parts)
            if len(self._pending) >= MAX_PENDING:
                raise P.ProtocolError("too_many_requests", f"the broker has {MAX_PENDING} requests waiting for "
                                                           "daemons; retry later", rid)
            backend = self._route(op, args, rid)
            if backend is None:
                return self._gather(op, envelope, rid)
            self._forward(backend, envelope, rid, op, args, frames)
        except P.ProtocolError as e:
            code = e.code
            self._unrouted_requests += 1
            self._unrouted_errors[code] = self._unrouted_errors.get(code, 0) + 1
            self._reply(envelope, P.reply_error(e.request_id if e.request_id is not None else rid, code, e.message))

    def _streams(self) -> dict[str, Backend]:
        """Stream name -> the daemon serving it, as last learned. Two daemons claiming one stream (a stream being
        moved from one to the other): the first given on the command line that is alive serves it (a warning
        says so, once)."""
        now = time.monotonic()
        claims: dict[str, list[Backend]] = {}
        for b in self.backends:
            for name in b.streams:
                claims.setdefault(name, []).append(b)
        out = {}
        for name, claimants in claims.items():
            out[name] = next((b for b in claimants if b.alive(now)), claimants[0])
            key = (name, tuple(b.commands for b in claimants))
            if len(claimants) > 1 and key not in self._claims_warned:
                self._claims_warned.add(key)
                log.warning("stream %r is served by %d daemons (%s): requests go to the first given that answers",
                            name, len(claimants), ", ".join(key[1]))
        return out

    def _route(self, op: str, args, rid) -> Backend | None:
        """The daemon serving the request's stream; None for ping/stats about the whole fleet."""
        streams, now = self._streams(), time.monotonic()
        if args.stream is None and op in OVERVIEW_OPS and len(streams) != 1:
            return None
        silent = [b.commands for b in self.backends if not b.alive(now)]
        hint = f" (daemons not answering: {', '.join(silent)})" if silent else ""
        name = route(op, args.stream, list(streams), rid, who="this broker", unknown_hint=hint)
        backend = streams[name]
        if not backend.alive(now):
            raise P.ProtocolError("stream_unavailable", f"stream {name!r} is served by the daemon at "
                                                        f"{backend.commands}, which is not answering", rid)
        return backend

    def _forward(self, backend: Backend, envelope: list[bytes], rid, op: str, args, frames: list[bytes],
                 gather: Gather | None = None) -> None:
        n = next(self._ids)
        try:
            backend.socket.send_multipart([P.request(n, op, args), *frames], flags=zmq.NOBLOCK)
        except zmq.Again as e:  # not connected (IMMEDIATE) or its queue is full: nothing was sent
            if gather is not None:
                return self._gathered(gather, {"ok": False})
            raise P.ProtocolError("stream_unavailable", f"the daemon at {backend.commands} is not connected or "
                                                        "not reading its requests", rid) from e
        self._pending[n] = Pending(envelope, rid, backend, time.monotonic() + REQUEST_TIMEOUT_S, gather)

    def _gather(self, op: str, envelope: list[bytes], rid) -> None:
        live = [b for b in self.backends if b.alive(time.monotonic())]
        if not live:
            raise P.ProtocolError("stream_unavailable", "no daemon behind this broker is answering", rid)
        gather = Gather(envelope, rid, len(live), Overview(op))
        for b in live:
            self._forward(b, envelope, rid, op, P.NoArgs(), [], gather)

    def _reply(self, envelope: list[bytes], reply: bytes, *extra: bytes) -> None:
        try:
            self._front.send_multipart([*envelope, reply, *extra], flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:  # the client went away
            log.debug("reply not sent: %s", e)

    # ---- daemons ----------------------------------------------------------------------------
    def _from_daemon(self, backend: Backend, msg: list[bytes]) -> None:
        try:
            reply = P.read_reply(msg[0])  # then the binary frames some replies carry (export_state)
        except P.ProtocolError as e:
            log.warning("unreadable reply from %s: %s", backend.commands, e)
            return
        backend.answered = True
        pending = self._pending.pop(reply["id"], None) if isinstance(reply["id"], int) else None
        if pending is None:
            return
        if pending.client is None:  # the broker's own ping
            self._learn(backend, reply)
        elif pending.gather is not None:
            self._gathered(pending.gather, reply)
        else:
            self._reply(pending.client, P.reply_with_id(msg[0], pending.rid), *msg[1:])

    def _learn(self, backend: Backend, reply: dict) -> None:
        backend.ping, backend.ping_answered = None, time.monotonic()
        streams = reply["result"]["streams"] if reply.get("ok") else []
        if streams != backend.streams:
            log.info("daemon at %s serves %s", backend.commands, ", ".join(streams) or "no stream")
            backend.streams = list(streams)

    def _gathered(self, g: Gather, reply: dict) -> None:
        if reply.get("ok"):
            g.overview.add(reply["result"])
        g.waiting -= 1
        if g.waiting == 0:
            self._reply(g.client, P.reply_ok(g.rid, g.overview.result(self._unrouted_requests,
                                                                      self._unrouted_errors)))

    def _ping_and_expire(self, now: float) -> None:
        for b in self.backends:
            if b.connected and b.ping is None and now - b.ping_answered >= PING_EVERY_S:
                n = next(self._ids)
                try:
                    b.socket.send_multipart([P.request(n, "ping")], flags=zmq.NOBLOCK)
                except zmq.Again:
                    continue
                b.ping, b.ping_sent = n, now
                self._pending[n] = Pending(None, None, b, now + HUNG_AFTER_S)
        self._fail_pending(lambda p: now >= p.deadline,
                           f"no reply from the daemon within {REQUEST_TIMEOUT_S:.0f} s; the request may or may not "
                           "have been applied")

    def _fail_pending(self, which, text: str) -> None:
        """Answers stream_unavailable to the waiting requests `which` selects; a ping that expired marks its
        daemon hung (not alive until it answers again)."""
        for n, p in list(self._pending.items()):
            if not which(p):
                continue
            del self._pending[n]
            if p.gather is not None:
                self._gathered(p.gather, {"ok": False})
            elif p.client is not None:
                self._reply(p.client, P.reply_error(p.rid, "stream_unavailable", text))
            elif p.backend.ping == n:
                p.backend.ping, p.backend.answered = None, False
                log.warning("daemon at %s has not answered for %.0f s: its streams are unavailable until it does",
                            p.backend.commands, HUNG_AFTER_S)
