"""Publishing each frame's result (and optional JPEG previews) of every stream on the one PUB socket.

Encoding masks (RLE/PNG), JSON, JPEG previews and sending run in a publisher thread behind a bounded
queue, so the tracking thread starts the next step at once; when the queue is full the oldest waiting
result is dropped, counted, and the count published (`publish_dropped`). Lifecycle events and end messages are
never dropped: everything that is sent leaves in the order it was handed over. With a queue of 0 everything
runs on the caller's thread. Only the publisher's thread touches the socket, and it closes it (a libzmq
socket must never be used from two threads)."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import zmq

from pipelines.frame import Frame

from ..core.results import FrameResult
from ..protocol import messages

log = logging.getLogger(__name__)

PREVIEW_JPEG_QUALITY = 80  # enough to click on; a 640x480 preview stays around 30-50 kB
CLOSE_TIMEOUT_S = 2.0  # how long close() waits for the thread to send what it has
# Frames whose answers are counted, per stream, to number a frame's later answers (revisions): a frame answered
# by motion gets the model's answer within the model's step, a prompt names a frame of the window; 1024 covers both.
ANSWERS_KEPT = 1024


@dataclass
class _Channel:
    """One stream's numbering and preview rate on the shared socket."""

    preview_every: int  # send a JPEG of every Nth frame (0: never)
    seq: int = 0
    preview_seq: int = 0
    event_seq: int = 0
    dropped: int = 0  # results dropped because the queue was full (published as publish_dropped)
    answers: OrderedDict[int, int] = field(default_factory=OrderedDict)  # frame -> answers sent (ANSWERS_KEPT)

    def revision(self, frame: int) -> int:
        """How many answers of `frame` went out before this one (and this one counted)."""
        n = self.answers.pop(frame, 0)
        self.answers[frame] = n + 1
        while len(self.answers) > ANSWERS_KEPT:
            self.answers.popitem(last=False)
        return n


@dataclass(frozen=True)
class _Job:
    stream: str
    info: messages.FrameInfo
    image: np.ndarray | None  # the frame's picture, for previews (None: no preview, e.g. a revision)
    result: FrameResult
    timings_ms: dict[str, float]
    dropped: int  # frames the source dropped so far
    queued_ns: int
    age_ms: float  # how much older the key frame whose masks these are is than the frame
    tags: messages.Tags  # the concepts' labels of the objects they found, as they were when handed over


@dataclass(frozen=True)
class _Events:
    stream: str
    events: tuple[messages.Event, ...]


@dataclass(frozen=True)
class _End:
    stream: str
    last_frame: int | None
    reason: str


def frame_info(frame: Frame) -> messages.FrameInfo:
    return messages.FrameInfo(frame.index, frame.width, frame.height, frame.pts_ns, frame.capture_ns)


class Publisher:
    """Sends protocol messages for the streams added to it. `on_sent(stream, capture_ns, queue_ms, publish_ms)`
    runs after each result left (in the publisher's thread): the daemon's latency metrics."""

    def __init__(self, socket: zmq.Socket, mask_encoding: str = "rle", queue_size: int = 4,
                 on_sent: Callable[[str, int, float, float], None] | None = None):
        self.socket = socket
        self.mask_encoding = mask_encoding
        self._channels: dict[str, _Channel] = {}
        self._on_sent = on_sent
        self._bound = queue_size  # items waiting for the thread, at most (0: no thread, sent by the caller)
        self._items: deque[_Job | _Events | _End | None] = deque()  # handed over, oldest first (None: stop)
        self._cond = threading.Condition()  # guards _items; notified on every change of it
        self._inline = threading.Lock()
        self._closed = False  # set under _inline once the socket is closed
        self._linger_ms = 0  # set by close(): how long the last messages may take to leave
        self._thread: threading.Thread | None = None
        if self._bound > 0:
            self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
            self._thread.start()

    def add_stream(self, stream: str, preview_every: int = 0) -> None:
        self._channels[stream] = _Channel(preview_every)

    def dropped(self, stream: str) -> int:
        """Results of this stream dropped because the queue was full."""
        return self._channels[stream].dropped

    def publish(self, stream: str, frame: Frame, result: FrameResult, timings_ms: dict[str, float],
                dropped: int, age_ms: float = 0.0, tags: messages.Tags = messages.NO_TAGS) -> None:
        """Hand one result over (or send it now, without a queue); safe from several threads (the tracking thread
        and a stream's motion thread)."""
        self._put(_Job(stream, frame_info(frame), frame.image, result, timings_ms, dropped, time.monotonic_ns(),
                       age_ms, tags))

    def publish_revision(self, stream: str, info: messages.FrameInfo, result: FrameResult, dropped: int,
                         tags: messages.Tags = messages.NO_TAGS) -> None:
        """A frame answered again (a prompt changed it): its new result, without a preview."""
        self._put(_Job(stream, info, None, result, {}, dropped, time.monotonic_ns(), 0.0, tags))

    def publish_events(self, stream: str, events: list[messages.Event]) -> None:
        """Concepts' lifecycle events of a stream, in order (never dropped for a result)."""
        if events:
            self._put(_Events(stream, tuple(events)))

    def publish_end(self, stream: str, last_frame: int | None, reason: str) -> None:
        """Tell subscribers that the stream is over, after every result already handed over (none dropped)."""
        self._wait_put(_End(stream, last_frame, reason))

    def close(self, linger_ms: int = 0) -> bool:
        """Send what is queued (bounded by CLOSE_TIMEOUT_S), then close the socket, letting messages leave for
        `linger_ms`; False when the thread is still busy and keeps the socket (the process may exit anyway)."""
        self._linger_ms = linger_ms
        if self._thread is None:
            self._close_socket()
            return True
        self._wait_put(None)
        self._thread.join(CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("publisher thread still busy after %.1f s; results may be lost", CLOSE_TIMEOUT_S)
            return False
        self._thread = None
        return True

    def _close_socket(self) -> None:
        with self._inline:  # a motion thread still publishing inline waits, then finds it closed
            self._closed = True
            self.socket.setsockopt(zmq.LINGER, self._linger_ms)
            self.socket.close()

    # ---- the publisher's side -------------------------------------------------------------
    def _put(self, item: _Job | _Events) -> None:
        if self._bound == 0:
            with self._inline:  # the socket is used by one thread at a time
                if not self._closed:
                    self._send(item)
            return
        with self._cond:
            if len(self._items) >= self._bound:
                self._drop_oldest_result()
            if len(self._items) < self._bound:
                self._items.append(item)
                self._cond.notify_all()
                return
        # only events and end messages wait: wait for the thread to send one (a result it never takes is dropped)
        if not self._wait_put(item) and isinstance(item, _Job):
            with self._cond:
                self._channels[item.stream].dropped += 1

    def _drop_oldest_result(self) -> None:
        """The oldest waiting result dropped and counted (only fresh results matter); events, end messages and the
        stop stay where they are."""
        for i, item in enumerate(self._items):
            if isinstance(item, _Job):
                del self._items[i]
                self._channels[item.stream].dropped += 1
                return

    def _wait_put(self, item: _Job | _Events | _End | None) -> bool:
        """Queue an item behind what waits, without dropping anything; False when the thread made no room for it
        within CLOSE_TIMEOUT_S."""
        if self._bound == 0:
            if item is not None:
                with self._inline:
                    if not self._closed:
                        self._send(item)
            return True
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) < self._bound, CLOSE_TIMEOUT_S):
                log.warning("publisher thread stuck for %.1f s: %s not queued", CLOSE_TIMEOUT_S, item or "stop")
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items)
                item = self._items.popleft()
                self._cond.notify_all()  # room for a caller waiting in _wait_put
            if item is None:
                self._close_socket()
                return
            try:
                self._send(item)
            except Exception:  # a failed send must not end publishing
                log.exception("publishing failed")

    def _send(self, item: _Job | _Events | _End) -> None:
        ch = self._channels[item.stream]
        if isinstance(item, _Events):
            for event in item.events:
                self.socket.send_multipart(messages.event_message(item.stream, ch.event_seq, event), flags=zmq.NOBLOCK)
                ch.event_seq += 1
            return
        if isinstance(item, _End):
            self.socket.send_multipart(messages.end_message(item.stream, ch.seq, item.last_frame, item.reason),
                                       flags=zmq.NOBLOCK)
            ch.seq += 1
            return
        t0 = time.monotonic_ns()
        info = item.info
        queue_ms = (t0 - item.queued_ns) / 1e6
        timings = {**item.timings_ms, "publish_queue": queue_ms}
        revision = ch.revision(item.result.frame_index)
        parts = messages.result_message(item.stream, ch.seq, info, item.result, timings, item.dropped,
                                        self.mask_encoding, ch.dropped, revision, item.age_ms, item.tags)
        ch.seq += 1
        self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        if self._on_sent is not None and revision == 0:  # latency counts a frame's first answer
            self._on_sent(item.stream, info.capture_ns, queue_ms, (time.monotonic_ns() - t0) / 1e6)
        if item.image is not None and revision == 0 and ch.preview_every and \
                item.result.frame_index % ch.preview_every == 0:
            self._preview(item.stream, ch, item.image, info, item.result.frame_index)

    def _preview(self, stream: str, ch: _Channel, image: np.ndarray, info: messages.FrameInfo, index: int) -> None:
        import cv2

        ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]),
                                [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_JPEG_QUALITY])
        parts = messages.preview_message(stream, ch.preview_seq, index, info, jpeg.tobytes())
        ch.preview_seq += 1
        self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
