"""The chaos benchmark's readers: one subscriber that reads every result (and settles the prompts'
checks), subscribers that come and go and read slowly or not at all, and a viewer page in a real
browser that is reloaded now and then."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from bench.chaos_requests import Checks


@dataclass(frozen=True)
class Seen:
    """The header fields of one published result that the report needs."""

    instance: int
    stream: str
    frame: int
    seq: int
    capture_ns: int
    publish_ns: int
    dropped: int
    source: str = "model"  # "motion": masks moved from key_frame (frames between key frames)
    key_frame: int = -1
    revision: int = 0  # answers of this frame published before this one


@dataclass
class ResultLog:
    """Every result of every stream, as published, attributed to the daemon instance that published it."""

    seen: list[Seen] = field(default_factory=list)
    newest: dict[tuple[int, str], int] = field(default_factory=dict)  # (instance, stream) -> newest frame
    first: dict[tuple[int, str], int] = field(default_factory=dict)  # (instance, stream) -> first frame seen
    seq_gaps: int = 0  # results this fast subscriber missed (seq jumps within an instance)
    ends: int = 0  # end-of-stream messages (a live daemon must send none)
    _last_seq: dict[tuple[int, str], int] = field(default_factory=dict)

    def add(self, s: Seen) -> None:
        key = (s.instance, s.stream)
        if key in self._last_seq and s.seq != self._last_seq[key] + 1:
            self.seq_gaps += abs(s.seq - self._last_seq[key] - 1)
        self._last_seq[key] = s.seq
        self.first.setdefault(key, s.frame)  # before newest: a reader that sees newest finds first
        self.newest[key] = max(self.newest.get(key, -1), s.frame)
        self.seen.append(s)


def read_results(endpoint: str, log: ResultLog, checks: Checks, instance_of: Callable[[int], int],
                 stop: threading.Event) -> None:
    """Subscribe to every stream's results until `stop`; `instance_of(publish_unix_ns)` says which daemon
    instance a result came from (the daemon is restarted during the run, its frame numbers start again)."""
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"results")
    sub.connect(endpoint)
    try:
        while not stop.is_set():
            if not sub.poll(200):
                continue
            parts = sub.recv_multipart()
            header = json.loads(parts[1])
            if header["type"] == "end":
                log.ends += 1
                continue
            if header["type"] != "result":
                continue
            s = Seen(instance_of(header["publish_unix_ns"]), header["stream"], header["frame"], header["seq"],
                     header["capture_ns"], header["publish_ns"], header["dropped"], header["source"],
                     -1 if header["key_frame"] is None else header["key_frame"], header["revision"])
            log.add(s)
            checks.on_result(s.instance, s.stream, s.key_frame, {o["id"] for o in header["objects"]})
    finally:
        sub.close(0)


@dataclass
class Churn:
    """Counts of the subscribers that came and went (several threads count here)."""

    joined: dict[str, int] = field(default_factory=dict)  # behaviour -> subscribers
    messages: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, behaviour: str | None = None) -> None:
        """A subscriber joined (behaviour given) or read a message."""
        with self.lock:
            if behaviour is None:
                self.messages += 1
            else:
                self.joined[behaviour] = self.joined.get(behaviour, 0) + 1


def churn_subscribers(endpoint: str, streams: list[str], rng: random.Random, churn: Churn,
                      stop: threading.Event, max_life_s: float) -> None:
    """One subscriber at a time on this thread: joins with a random topic, reads fast, slowly (a second per
    message, a small queue) or not at all, and leaves after a random time up to max_life_s."""
    ctx = zmq.Context.instance()
    while not stop.is_set():
        behaviour = rng.choice(["fast", "slow", "silent"])
        churn.count(behaviour)
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        if behaviour != "fast":
            sub.setsockopt(zmq.RCVHWM, 4)  # a reader that falls behind: the daemon must drop, not wait
        topic = rng.choice(["results", "preview", *(f"results.{s}" for s in streams)])
        sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        sub.connect(endpoint)
        leave = time.monotonic() + rng.uniform(1.0, max_life_s)
        try:
            while not stop.is_set() and time.monotonic() < leave:
                if behaviour == "silent":
                    stop.wait(0.2)
                elif sub.poll(200):
                    sub.recv_multipart()
                    churn.count()
                    if behaviour == "slow":
                        stop.wait(1.0)
        finally:
            sub.close(0)


@dataclass
class Reloads:
    """The viewer page's reloads and how many showed live, advancing frames again."""

    reloads: int = 0
    live: int = 0
    failures: list[str] = field(default_factory=list)
    skipped: str | None = None  # why there is no browser part


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's, installed by ./setup.sh
# Chromium flags for a closed network: no background connections to Google, no GPU, no sandbox as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
FRAME_ADVANCE_TIMEOUT_MS = 30_000  # after a reload the page shows new frames well within this (a restart: READY first)


def reload_viewer(url: str, every_s: float, reloads: Reloads, stop: threading.Event, chromium: str,
                  chromium_args: list[str]) -> None:
    """A real browser on the viewer's page, reloaded every `every_s`; after each load the shown frame number
    must advance. All browser calls stay on this thread (Playwright's sync API)."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        reloads.skipped = f"playwright is not installed ({e}): ./setup.sh installs it"
        return
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, args=chromium_args)
        except PlaywrightError as e:
            reloads.skipped = f"chromium could not start ({str(e).splitlines()[0]}): ./setup.sh installs it"
            return
        page = browser.new_page(viewport={"width": 800, "height": 500})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            while not stop.is_set():
                reloads.reloads += 1
                try:
                    page.goto(url) if reloads.reloads == 1 else page.reload()
                    page.wait_for_function("() => /^\\d+$/.test(document.getElementById('frame').textContent)",
                                           timeout=FRAME_ADVANCE_TIMEOUT_MS)
                    first = int(page.inner_text("#frame"))
                    page.wait_for_function(
                        f"() => Number(document.getElementById('frame').textContent) !== {first}",
                        timeout=FRAME_ADVANCE_TIMEOUT_MS)
                    reloads.live += 1
                except PlaywrightError as e:
                    reloads.failures.append(f"reload {reloads.reloads}: {str(e).splitlines()[0]}")
                reloads.failures.extend(f"reload {reloads.reloads}: page error: {e}" for e in errors)
                errors.clear()
                stop.wait(every_s)
        finally:
            browser.close()
