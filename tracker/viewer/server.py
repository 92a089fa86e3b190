"""`samtrack view`: an HTTP server with one static page and a WebSocket that relays the daemon's
protocol-v1 messages (results, previews, end of stream) to browsers and their requests to the daemon."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import struct
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
from aiohttp import WSMsgType, web

from .. import protocol as P
from ..protocol.curve import CurveClient, is_loopback
from .concepts import CONCEPT_OPS, AddRate, check_concept_args, event_message, is_event_topic
from .origin import OriginPolicy

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
SCRIPTS = ("viewer.js", "concepts.js")  # the page's scripts, each served at /<name>; nothing else is
BROWSER_QUEUE = 6  # daemon messages waiting per browser: a slow browser loses old frames, never slows others
EVENT_QUEUE = 32  # lifecycle events waiting per browser: a slow one loses the oldest (its log shows the last few)
REQUEST_TIMEOUT_S = 30.0  # a prompt on a past frame re-tracks up to a window of frames: seconds on a CPU
HEALTH_EVERY_S = 0.5  # how often the daemon's state is re-checked
QUIET_S = 2.0  # no message from the daemon for this long: ping it, to tell "down" from "not publishing"
PING_TIMEOUT_S = 1.5  # a daemon busy with one tracking step still answers well within this
RELAYED_OPS = frozenset({"ping", "add_points", "add_box", "remove_object", "reset", "list_objects", "stats",
                         *CONCEPT_OPS})
# The page is self-contained: nothing may load from anywhere but this server (works offline, no CDN), and no
# other site may frame it (a framed viewer could be clicked on by a page the user did not mean to prompt).
CSP = ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
       "frame-ancestors 'none'")
MAX_BROWSERS = 16  # pages connected at once: each costs a relay of every frame
MAX_IN_FLIGHT = 8  # requests of one page waiting for the daemon: a page's burst never piles up tasks


@dataclass(frozen=True)
class ViewerSettings:
    """Where the daemon is and where the viewer listens."""

    results: str = P.DEFAULT_RESULTS
    commands: str = P.DEFAULT_COMMANDS
    stream: str | None = None  # None: every stream on the results socket
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # required in the URL when set (always set when bound beyond loopback)
    curve: CurveClient | None = None
    allow_origins: frozenset[str] = frozenset()  # pages of other origins that may use the viewer (normalized)


def needs_token(host: str) -> bool:
    return not is_loopback(f"tcp://{host}:0")


def pack(parts: list[bytes]) -> bytes:
    """A ZeroMQ multipart message as one WebSocket message: count, lengths (uint32 LE), then the parts."""
    return struct.pack(f"<{len(parts) + 1}I", len(parts), *map(len, parts)) + b"".join(parts)


def as_rle(header: dict, parts: list[bytes]) -> list[bytes]:
    """A result message (its parsed header, and its parts) with its masks in RLE, the one encoding the
    page decodes; the header is updated in place when a mask is re-encoded."""
    objects = [o for o in header.get("objects", ()) if "mask" in o and o["mask"]["encoding"] != "rle"]
    if not objects:
        return parts
    masks = list(parts[2:])
    for o in objects:
        i = o["mask"]["frame"]
        m = P.decode_mask(masks[i], o["mask"]["encoding"], header["height"], header["width"])
        masks[i] = P.encode_mask(m, "rle")
        o["mask"]["encoding"] = "rle"
    return [parts[0], json.dumps(header).encode(), *masks]


class Browser:
    """One connected page: replies and states are always sent; daemon messages and events only the freshest few."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.control: deque[str] = deque()
        self.frames: deque[bytes] = deque(maxlen=BROWSER_QUEUE)
        self.events: deque[str] = deque(maxlen=EVENT_QUEUE)
        self.wake = asyncio.Event()
        self.in_flight = 0  # its requests waiting for the daemon

    def push_frame(self, data: bytes) -> None:
        self.frames.append(data)
        self.wake.set()

    def push_control(self, message: dict) -> None:
        self.control.append(json.dumps(message))
        self.wake.set()

    def push_event(self, text: str) -> None:
        self.events.append(text)
        self.wake.set()

    async def run(self) -> None:
        while not self.ws.closed:
            await self.wake.wait()
            self.wake.clear()
            while (self.control or self.events or self.frames) and not self.ws.closed:
                if self.control or self.events:
                    await self.ws.send_str((self.control or self.events).popleft())
                else:
                    await self.ws.send_bytes(self.frames.popleft())


class Viewer:
    """The server's state: browsers, the daemon's sockets, and what the daemon is doing."""

    def __init__(self, settings: ViewerSettings):
        self.settings = settings
        self.browsers: set[Browser] = set()
        self.state, self.message = "connecting", f"connecting to the daemon at {settings.commands}"
        self._last_message = 0.0
        self._streams: set[str] = set()  # streams whose results came (a daemon may serve several)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._add_rate = AddRate()  # add_concept requests of every page together
        self._tasks: set[asyncio.Task] = set()
        self.policy: OriginPolicy | None = None  # set once listening (the port may have been 0)
        self._ctx = zmq.asyncio.Context()
        self._sub = self._socket(zmq.SUB)
        self._sub.connect(settings.results)
        for prefix in P.subscriptions(settings.stream, previews=True):
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix)
        self._sub.setsockopt(zmq.SUBSCRIBE, f"{P.EVENTS_TOPIC}.{settings.stream or ''}".encode())
        self._dealer = self._socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.IMMEDIATE, 1)  # no queueing for a daemon that is down: fail at once
        self._dealer.connect(settings.commands)

    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if self.settings.curve is not None:
            self.settings.curve.apply(s)
        return s

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        for script in SCRIPTS:
            app.router.add_get(f"/{script}", self._script)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/favicon.ico", lambda _request: web.Response(status=204))
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app) -> None:
        for loop in (self._pump(), self._replies(), self._health()):
            self._spawn(loop)

    async def _stop(self, _app) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for b in list(self.browsers):
            await b.ws.close()
        self._ctx.destroy(0)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        """Every request: its Host names this viewer and its Origin (when a page sends one) is allowed."""
        why = self.policy.refusal(request.headers.get("Host"), request.headers.get("Origin")) if self.policy \
            else "the viewer is starting"
        if why is not None:
            log.warning("refused %s %s: %s", request.method, request.path, why)
            raise web.HTTPForbidden(text=why + "\n")
        return await handler(request)

    def _check_token(self, request: web.Request) -> None:
        token = self.settings.token
        if token is not None and not secrets.compare_digest(request.query.get("token", ""), token):
            raise web.HTTPUnauthorized(text="this viewer needs its token: open the URL that `samtrack view` "
                                            "printed (it ends in ?token=...)\n")

    async def _page(self, request: web.Request) -> web.StreamResponse:
        self._check_token(request)
        return web.FileResponse(STATIC_DIR / "viewer.html", headers={"Content-Security-Policy": CSP})

    async def _script(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / request.path.lstrip("/"), headers={"Content-Type": "text/javascript"})

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        self._check_token(request)
        if len(self.browsers) >= MAX_BROWSERS:
            raise web.HTTPServiceUnavailable(text=f"{MAX_BROWSERS} pages are connected already; close one\n")
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=1 << 20)
        browser = Browser(ws)
        self.browsers.add(browser)  # counted before the handshake's await: concurrent ones cannot pass the cap
        try:
            await ws.prepare(request)
        except BaseException:
            self.browsers.discard(browser)
            raise
        browser.push_control(self._state_message())
        sender = asyncio.create_task(browser.run())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._spawn(self._relay(browser, msg.data))
        finally:
            self.browsers.discard(browser)
            sender.cancel()
        return ws

    # -- daemon side -----------------------------------------------------------------------------------

    def _set_state(self, state: str, message: str) -> None:
        if (state, message) != (self.state, self.message):
            self.state, self.message = state, message
            log.info("daemon %s: %s", state, message)
            for b in self.browsers:
                b.push_control(self._state_message())

    def _state_message(self) -> dict:
        s = self.settings
        return {"type": "viewer", "state": self.state, "message": self.message,
                "results": s.results, "commands": s.commands, "stream": s.stream}

    async def _pump(self) -> None:
        """Daemon messages to every browser, masks in RLE."""
        while True:
            parts = await self._sub.recv_multipart()
            if is_event_topic(parts[0], self.settings.stream):
                self._relay_event(parts)
                continue
            if not P.topic_matches(parts[0], self.settings.stream):  # "results.cam" also receives "results.cam2"
                continue
            self._last_message = time.monotonic()
            try:
                header = json.loads(parts[1])
                if header["type"] == "result":
                    parts = as_rle(header, parts)
                    self._streams.add(header["stream"])
                    names = ", ".join(repr(n) for n in sorted(self._streams))
                    self._set_state("live", f"tracking stream{'s' if len(self._streams) > 1 else ''} {names}")
                elif header["type"] == "end":
                    self._set_state("ended", f"the stream ended ({header['reason']}) after frame {header['frame']}")
            except (ValueError, KeyError, IndexError, P.ProtocolError) as e:
                log.warning("skipped a message the viewer cannot read: %s", e)
                continue
            data = pack(parts)
            for b in self.browsers:
                b.push_frame(data)

    def _relay_event(self, parts: list[bytes]) -> None:
        """One lifecycle event to every browser, as a text message of its known fields."""
        try:
            text = json.dumps(event_message(parts[1]))
        except (ValueError, IndexError) as e:
            log.warning("skipped an event the viewer cannot read: %s", e)
            return
        for b in self.browsers:
            b.push_event(text)

    async def _replies(self) -> None:
        while True:
            parts = await self._dealer.recv_multipart()
            try:
                reply = json.loads(parts[0])
                future = self._pending.pop(reply["id"], None)
            except (ValueError, KeyError, TypeError):
                continue
            if future is not None and not future.done():
                future.set_result(reply)

    async def request(self, op: str, args: dict, timeout: float) -> dict:
        """The daemon's reply (a protocol-v1 reply object); raises ConnectionError or TimeoutError."""
        rid = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self._dealer.send(P.request(rid, op, args), flags=zmq.NOBLOCK)
            return await asyncio.wait_for(future, timeout)
        except zmq.Again as e:
            raise ConnectionError(f"the daemon at {self.settings.commands} is not reachable") from e
        finally:
            self._pending.pop(rid, None)

    async def _relay(self, browser: Browser, text: str) -> None:
        """One request from the page to the daemon, and its reply (or why there is none) back."""
        rid = None
        try:
            msg = json.loads(text)
            rid = msg.get("id")
            op, args = msg["op"], msg.get("args") or {}
            if op not in RELAYED_OPS:
                raise ValueError(f"op {op!r} is not relayed by the viewer")
            if not isinstance(args, dict):
                raise ValueError("args: a JSON object")
            if op in CONCEPT_OPS:
                check_concept_args(op, args)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            browser.push_control(P.error_reply(rid, "bad_request", f"the page sent a bad request: {e}"))
            return
        if browser.in_flight >= MAX_IN_FLIGHT:
            browser.push_control(P.error_reply(rid, "too_many_requests", f"{MAX_IN_FLIGHT} requests of this page "
                                                                         "are waiting for the daemon; wait for them"))
            return
        if op == "add_concept" and not self._add_rate.take():
            browser.push_control(P.error_reply(rid, "too_many_requests", "concepts are being added too fast; the "
                                               f"next one in {self._add_rate.wait_s():.0f} s"))
            return
        browser.in_flight += 1
        try:
            reply = await self.request(op, args, REQUEST_TIMEOUT_S)
        except ConnectionError as e:
            reply = P.error_reply(rid, "unreachable", f"{e}; the prompt was not sent")
        except TimeoutError:
            reply = P.error_reply(rid, "timeout", f"no reply from the daemon within {REQUEST_TIMEOUT_S:.0f} s")
        finally:
            browser.in_flight -= 1
        browser.push_control({**reply, "id": rid})

    async def _health(self) -> None:
        """While the daemon is quiet, find out why: down, not publishing, or its source reconnecting."""
        while True:
            await asyncio.sleep(HEALTH_EVERY_S)
            if time.monotonic() - self._last_message < QUIET_S:
                continue
            try:
                reply = await self.request("ping", {}, PING_TIMEOUT_S)
            except (ConnectionError, TimeoutError):
                if self.state != "ended":
                    self._set_state("unreachable", f"no answer from the daemon at {self.settings.commands}; "
                                                   "reconnecting automatically")
                continue
            if self.state == "ended" or not reply.get("ok"):
                continue
            source = reply["result"].get("source", {})
            if not source.get("connected", True):
                self._set_state("waiting", "the daemon is up; its source is reconnecting")
            else:
                self._set_state("waiting", f"the daemon answers but nothing arrives on {self.settings.results} "
                                           "(first frame, or a wrong results endpoint or stream name?)")


async def serve(settings: ViewerSettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set; prints the URL to open."""
    viewer = Viewer(settings)
    runner = web.AppRunner(viewer.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    port = runner.addresses[0][1]  # the real one when asked for port 0
    viewer.policy = OriginPolicy(port, not needs_token(settings.host), settings.allow_origins, settings.host)
    query = f"/?token={settings.token}" if settings.token else "/"
    print(f"samtrack view: open http://{host}:{port}{query}  (daemon: results {settings.results}, "
          f"commands {settings.commands})", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
