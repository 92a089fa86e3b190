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
from ..protocol import messages
from ..protocol.curve import CurveClient, CurveServer

log = logging.getLogger(__name__)

PING_EVERY_S = 1.0  # each connected daemon is pinged this often: learns its streams
# A daemon whose connection drops (killed, host gone) is unavailable at once (socket monitor events); one
# still connected but silent this long is taken for hung. Longer than the longest request a daemon may be
# busy with, so a busy daemon is never mistaken for a dead one.
HUNG_AFTER_S = 30.0
# A forwarded request without a reply after this long is answered stream_unavailable (a prompt on a
# past frame re-tracks up to a window of frames: tens of seconds on a CPU).
REQUEST_TIMEOUT_S = 60.0
POLL_MS = 100  # the loop wakes at least this often for pings and timeouts


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
    last_answer: float = 0.0  # monotonic time of its last reply (0: never)
    last_ping: float = 0.0

    def alive(self, now: float) -> bool:
        return self.connected and self.last_answer > 0 and now - self.last_answer < HUNG_AFTER_S


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

    op: str
    client: list[bytes]
    rid: str | int | None
    waiting: int
    per_stream: dict[str, dict] = field(default_factory=dict)


class Broker:
    """Runs until stop()."""

    def __init__(self, settings: BrokerSettings):
        self.settings = settings
        self._ctx = zmq.Context()
        self._auth = settings.front_curve.start(self._ctx) if settings.front_curve else None
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        self._front = self._socket(zmq.ROUTER, server=True)
        self.backends = [self._backend(r, c, streams) for r, c, streams in settings.daemons]
        self._unrouted_requests = 0
        self._unrouted_errors: dict[str, int] = {}

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
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        return Backend(results, commands, sock, monitor, list(streams))

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from ..daemon.security import bind

        s = self.settings
        xpub, xsub = self._socket(zmq.XPUB, server=True), self._socket(zmq.XSUB, server=False)
        control = self._ctx.socket(zmq.PAIR)
        control.bind("inproc://broker-control")
        proxy = threading.Thread(target=self._proxy, args=(xpub, xsub), name="results-proxy", daemon=True)
        try:
            bind(xpub, s.results, curve=s.front_curve is not None)
            bind(self._front, s.commands, curve=s.front_curve is not None)
            for b in self.backends:
                xsub.connect(b.results)
                b.socket.connect(b.commands)
            proxy.start()
            log.info("broker: results on %s, commands on %s, for %d daemon(s)", s.results, s.commands,
                     len(self.backends))
            self._loop()
        finally:
            control.send(b"TERMINATE")
            proxy.join(5.0)
            control.close()
            for b in self.backends:
                b.socket.disable_monitor()
                b.monitor.close(0)
                b.socket.close(0)
            self._front.close(0)
            if self._auth is not None:
                self._auth.stop()
            self._ctx.term()

    def _proxy(self, xpub: zmq.Socket, xsub: zmq.Socket) -> None:
        """libzmq's proxy moves results down and subscriptions up until TERMINATE on the control socket."""
        control = self._ctx.socket(zmq.PAIR)
        control.connect("inproc://broker-control")
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
        while not self._stop.is_set():
            for sock, _ in poller.poll(POLL_MS):
                if sock is self._front:
                    self._from_client(self._front.recv_multipart())
                elif sock in by_monitor:
                    self._connection(by_monitor[sock], recv_monitor_message(sock)["event"])
                else:
                    self._from_daemon(by_socket[sock], sock.recv_multipart())
            self._ping_and_expire(time.monotonic())

    def _connection(self, backend: Backend, event: int) -> None:
        """A daemon's connection came up or dropped; requests waiting on a dropped one are answered."""
        backend.connected = event == zmq.EVENT_CONNECTED
        log.info("daemon at %s %s", backend.commands, "connected" if backend.connected else "disconnected")
        if not backend.connected:
            self._fail_pending(lambda p: p.backend is backend,
                               f"the daemon at {backend.commands} disconnected; the request may or may not have "
                               "been applied")

    # ---- clients ----------------------------------------------------------------------------
    def _from_client(self, msg: list[bytes]) -> None:
        identity, parts = msg[0], msg[1:]
        envelope = [identity]
        if parts and parts[0] == b"":  # a REQ client's delimiter, returned with the reply
            envelope, parts = [identity, b""], parts[1:]
        rid = None
        try:
            rid, op, args, frames = P.parse_request(parts)
            if args.stream is None and op in ("ping", "stats") and len(self._streams()) != 1:
                return self._gather(op, envelope, rid)
            self._forward(self._route(op, args, rid), envelope, rid, op, args, frames)
        except P.ProtocolError as e:
            code = e.code
            self._unrouted_requests += 1
            self._unrouted_errors[code] = self._unrouted_errors.get(code, 0) + 1
            self._reply(envelope, P.reply_error(e.request_id if e.request_id is not None else rid, code, e.message))

    def _streams(self) -> dict[str, Backend]:
        """Stream name -> the daemon serving it, as last learned."""
        return {name: b for b in self.backends for name in b.streams}

    def _route(self, op: str, args, rid) -> Backend:
        streams, now = self._streams(), time.monotonic()
        name = args.stream
        if name is None:
            if len(streams) != 1:
                raise P.ProtocolError("stream_required", f"{op} needs args.stream: this broker serves "
                                                         f"{', '.join(streams) or 'no stream yet'}", rid)
            name = next(iter(streams))
        backend = streams.get(name)
        if backend is None:
            silent = [b.commands for b in self.backends if not b.alive(now)]
            raise P.ProtocolError("unknown_stream", f"no stream {name!r} behind this broker; it serves "
                                                    f"{', '.join(streams) or 'no stream yet'}"
                                  + (f" (daemons not answering: {', '.join(silent)})" if silent else ""), rid)
        if not backend.alive(now):
            raise P.ProtocolError("stream_unavailable", f"stream {name!r} is served by the daemon at "
                                                        f"{backend.commands}, which is not answering", rid)
        return backend

    def _forward(self, backend: Backend, envelope: list[bytes], rid, op: str, args, frames: list[bytes],
                 gather: Gather | None = None) -> None:
        n = next(self._ids)
        try:
            backend.socket.send_multipart([P.request(n, op, args), *frames], flags=zmq.NOBLOCK)
        except zmq.Again as e:  # not connected (IMMEDIATE): nothing was sent
            if gather is not None:
                return self._gathered(gather, {"ok": False})
            raise P.ProtocolError("stream_unavailable", f"the daemon at {backend.commands} is not connected",
                                  rid) from e
        self._pending[n] = Pending(envelope, rid, backend, time.monotonic() + REQUEST_TIMEOUT_S, gather)

    def _gather(self, op: str, envelope: list[bytes], rid) -> None:
        live = [b for b in self.backends if b.alive(time.monotonic())]
        if not live:
            raise P.ProtocolError("stream_unavailable", "no daemon behind this broker is answering", rid)
        gather = Gather(op, envelope, rid, len(live))
        for b in live:
            self._forward(b, envelope, rid, op, P.NoArgs(), [], gather)

    def _reply(self, envelope: list[bytes], reply: bytes) -> None:
        try:
            self._front.send_multipart([*envelope, reply], flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:  # the client went away
            log.debug("reply not sent: %s", e)

    # ---- daemons ----------------------------------------------------------------------------
    def _from_daemon(self, backend: Backend, msg: list[bytes]) -> None:
        try:
            reply = P.read_reply(msg[-1])
        except P.ProtocolError as e:
            log.warning("unreadable reply from %s: %s", backend.commands, e)
            return
        backend.last_answer = time.monotonic()
        pending = self._pending.pop(reply["id"], None) if isinstance(reply["id"], int) else None
        if pending is None:
            return
        if pending.client is None:  # the broker's own ping
            self._learn(backend, reply)
        elif pending.gather is not None:
            self._gathered(pending.gather, reply)
        else:
            self._reply(pending.client, P.reply_with_id(msg[-1], pending.rid))

    def _learn(self, backend: Backend, reply: dict) -> None:
        streams = reply["result"]["streams"] if reply.get("ok") else []
        if streams != backend.streams:
            log.info("daemon at %s serves %s", backend.commands, ", ".join(streams) or "no stream")
            backend.streams = list(streams)

    def _gathered(self, g: Gather, reply: dict) -> None:
        if reply.get("ok"):
            result = reply["result"]
            g.per_stream.update(result["per_stream"] if "per_stream" in result else {result["stream"]: result})
        g.waiting -= 1
        if g.waiting == 0:
            merged = (messages.overview_result(g.per_stream) if g.op == "ping" else
                      messages.stats_overview_result(g.per_stream, self._unrouted_requests, self._unrouted_errors))
            self._reply(g.client, P.reply_ok(g.rid, merged))

    def _ping_and_expire(self, now: float) -> None:
        for b in self.backends:
            if b.connected and now - b.last_ping >= PING_EVERY_S:
                b.last_ping = now
                n = next(self._ids)
                try:
                    b.socket.send_multipart([P.request(n, "ping")], flags=zmq.NOBLOCK)
                except zmq.Again:
                    continue
                self._pending[n] = Pending(None, None, b, now + HUNG_AFTER_S)
        self._fail_pending(lambda p: now >= p.deadline,
                           f"no reply from the daemon within {REQUEST_TIMEOUT_S:.0f} s; the request may or may not "
                           "have been applied")

    def _fail_pending(self, which, text: str) -> None:
        """Answers stream_unavailable to the waiting requests `which` selects (forgets the broker's pings)."""
        for n, p in list(self._pending.items()):
            if not which(p):
                continue
            del self._pending[n]
            if p.gather is not None:
                self._gathered(p.gather, {"ok": False})
            elif p.client is not None:
                self._reply(p.client, P.reply_error(p.rid, "stream_unavailable", text))
