"""Who may use `samtrack view`: its token, the origins and hosts it serves, a page of another site in Chromium."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from tests.daemon_helpers import present_checkpoint, start_daemon
from tests.viewer_helpers import ViewerProcess, chromium, daemon_objects
from tracker.client import Client
from tracker.client.spawn import free_port
from tracker.viewer.server import needs_token


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_token_is_required_when_set():
    viewer = ViewerProcess("tcp://127.0.0.1:1", "tcp://127.0.0.1:2")
    try:
        _token_is_required(viewer)
    finally:
        assert viewer.stop() == 0


def _token_is_required(viewer: ViewerProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{viewer.port}/", timeout=10)
    with e.value:
        assert e.value.code == 401 and "token" in e.value.read().decode()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{viewer.port}/ws?token=wrong", timeout=10)
    with e.value:
        assert e.value.code == 401
    with urllib.request.urlopen(viewer.url, timeout=10) as r:
        assert r.status == 200 and "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_beyond_loopback_a_token_is_generated():
    assert needs_token("0.0.0.0") and needs_token("192.168.1.7") and not needs_token("127.0.0.1")
    v = ViewerProcess("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "--host", "0.0.0.0", token=None)
    try:
        m = re.search(r"\?token=([\w-]{16,})", v.first_line)
        assert m, v.first_line
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{v.port}/", timeout=10)
        with e.value:
            assert e.value.code == 401
        with urllib.request.urlopen(f"http://127.0.0.1:{v.port}/?token={m.group(1)}", timeout=10) as r:
            assert r.status == 200
    finally:
        v.stop()


def _status(port: int, method: str = "GET", path: str = "/", **headers: str) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def _ws_handshake(port: int, origin: str | None, host: str | None = None) -> str:
    """'open: <first message type>' or 'refused <status>' (host: the Host header a proxy would pass)."""
    import asyncio
    import concurrent.futures

    import aiohttp

    async def attempt() -> str:
        async with aiohttp.ClientSession() as s:
            try:
                headers = {"Host": host} if host is not None else None
                async with s.ws_connect(f"http://127.0.0.1:{port}/ws", origin=origin, headers=headers) as ws:
                    msg = await ws.receive(timeout=10)
                    return "open: " + json.loads(msg.data)["type"]
            except aiohttp.WSServerHandshakeError as e:
                return f"refused {e.status}"

    # in a thread of its own: Playwright's sync API (a browser fixture of this module still open) keeps an event
    # loop running in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, attempt()).result(timeout=60)


def test_pages_of_other_origins_and_other_hosts_are_refused():
    """Without a browser: the viewer's own origin and a named one may open the socket; another site, a page
    from another port, a rebound host name (DNS rebinding) and a sandboxed page may not; no HTTP call either."""
    v = ViewerProcess("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "--allow-origin", "http://127.0.0.1:9/",
                      token=None)
    try:
        own = f"http://127.0.0.1:{v.port}"
        assert _status(v.port) == 200
        assert _ws_handshake(v.port, own) == "open: viewer"
        assert _ws_handshake(v.port, None) == "open: viewer"  # not a web page (a script): nothing to protect
        assert _ws_handshake(v.port, "http://127.0.0.1:9") == "open: viewer"  # named with --allow-origin
        for origin in ("http://evil.example", f"http://127.0.0.1:{v.port + 1}", "null", f"https://127.0.0.1:{v.port}"):
            assert _ws_handshake(v.port, origin) == "refused 403", origin
        assert _status(v.port, Host=f"evil.example:{v.port}") == 403  # a name rebound to 127.0.0.1
        assert _status(v.port, "POST", "/ws", Origin="http://evil.example") == 403
        assert _status(v.port, "POST", "/", Origin=own) == 405  # and nothing here changes state over plain HTTP
    finally:
        assert v.stop() == 0


def test_behind_a_proxy_the_allowed_origins_scheme_counts():
    """A loopback viewer behind an HTTPS proxy (--allow-origin https://view.example.com, the proxy passing its
    Host): a page from https://view.example.com may use it, one from http://view.example.com may not (the
    viewer once took the page's own origin to be http://<Host>, so both were accepted)."""
    v = ViewerProcess("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "--allow-origin", "https://view.example.com",
                      token=None)
    try:
        assert _ws_handshake(v.port, "https://view.example.com", host="view.example.com") == "open: viewer"
        assert _ws_handshake(v.port, "http://view.example.com", host="view.example.com") == "refused 403"
        assert _ws_handshake(v.port, f"http://127.0.0.1:{v.port}") == "open: viewer"  # its own page, directly
    finally:
        assert v.stop() == 0


ATTACKER_PAGE = """<!doctype html><title>another site</title><script>
window.outcome = new Promise((resolve) => {
  const ws = new WebSocket("ws://127.0.0.1:%d/ws");
  ws.onopen = () => ws.send(JSON.stringify({id: 1, op: "%s", args: {}}));
  ws.onmessage = (ev) => { if (typeof ev.data === "string" && JSON.parse(ev.data).id === 1) resolve("reply"); };
  ws.onerror = () => resolve("refused");
});
</script>"""


@pytest.mark.slow  # a real browser, viewer and daemon
def test_a_page_from_another_origin_cannot_use_the_viewer(browser, tmp_path):
    """In Chromium, a page served from another loopback port tries the viewer's socket: refused, and its reset
    never reaches the daemon; the same page is served once its origin is allowed (--allow-origin)."""
    weights = present_checkpoint(tmp_path / "present.pt")  # objects present: the prompt makes one to keep
    daemon = start_daemon("--checkpoint", str(weights))
    try:
        _another_origin(browser, daemon, tmp_path)
    finally:
        daemon.stop()


def _another_origin(browser, daemon, tmp_path) -> None:
    import http.server
    import threading

    with Client(daemon.commands, timeout=30) as c:
        c.add_points(7, [[80, 60]], [1])
    refused = ViewerProcess(daemon.results, daemon.commands, token=None)
    (tmp_path / "attack.html").write_text(ATTACKER_PAGE % (refused.port, "reset"))
    site_port = free_port()
    allowed = ViewerProcess(daemon.results, daemon.commands, "--allow-origin", f"http://127.0.0.1:{site_port}",
                            token=None)
    (tmp_path / "allowed.html").write_text(ATTACKER_PAGE % (allowed.port, "list_objects"))
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    site = http.server.ThreadingHTTPServer(("127.0.0.1", site_port), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    pg = browser.new_page()
    try:
        pg.goto(f"http://127.0.0.1:{site_port}/attack.html")
        assert pg.evaluate("() => window.outcome") == "refused"
        assert 7 in daemon_objects(daemon)  # the page's reset never reached the daemon
        pg.goto(f"http://127.0.0.1:{site_port}/allowed.html")
        assert pg.evaluate("() => window.outcome") == "reply"
    finally:
        pg.close()
        site.shutdown()
        site.server_close()
        assert refused.stop() == 0 and allowed.stop() == 0
