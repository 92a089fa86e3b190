"""A replay's stand-ins for a stream's feed and motion thread, for recordings whose frames were answered by motion
between key frames: the model gets the recorded key frames under their recorded numbers, and every frame is carried
from the model results the daemon's motion thread took, where it took them ("seeded" records), so that its answers
are reproduced bit for bit (tracker/recording/keyframes.py reads them in that order)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pipelines.frame import Frame

from ..core.results import FrameResult
from ..motion.carrier import Carrier
from ..recording.replay import RecordingSource
from .carrying import Carried
from .feed import Numbered

log = logging.getLogger(__name__)

SEEDS_KEPT = 256  # model results waiting for the record of their taking: taken within a step or a prompt


class ReplayFeed:
    """A recording's frames as a stream's feed: numbered as recorded in a session answered by motion (the model's
    key frames only), by the tracker otherwise; the frames a prompt may name kept."""

    def __init__(self, source: RecordingSource):
        self.source = source
        self._last = -1

    def start(self) -> None:
        self.source.start()

    def read(self, timeout: float) -> Numbered | None:
        frame = self.source.read(timeout)
        if frame is None:
            return None
        number = self.source.number if self.source.keys is not None else -1
        self._last = max(self._last, number)
        return Numbered(number if number is not None else -1, frame, answered=True)

    @property
    def next_number(self) -> int:
        return self._last + 1

    def renumber(self, first_number: int) -> None:
        self._last = max(self._last, first_number - 1)

    def taken(self, number: int) -> None:
        """(A replay offers only the recorded key frames.)"""

    def stepped(self, ms: float) -> None:
        """(The daemon's feed judges the model's speed by this; a replay follows the recording instead.)"""

    def kept(self, number: int) -> Frame | None:
        return self.source.kept(number)

    def kept_numbers(self) -> list[int]:
        return self.source.keys.kept_numbers() if self.source.keys is not None else []

    def stop(self) -> None:
        """(The daemon stops the source itself.)"""


@dataclass(frozen=True)
class _Seed:
    result: FrameResult
    capture_ns: int | None
    forget: bool


class ReplayMotion:
    """The motion thread of a replayed session: frames and seeds come in the recorded order; each frame's carried
    masks go to `on_answer` (published and compared like the daemon's)."""

    def __init__(self, on_answer: Callable[[Carried], None], on_unknown_seed: Callable[[dict], None]):
        import cv2

        cv2.setNumThreads(1)  # as the daemon's motion thread ran (its answers are compared bit for bit)
        self._on_answer = on_answer
        self._on_unknown_seed = on_unknown_seed  # taken in the recording, never made here: nothing is comparable
        self._carrier: Carrier | None = None
        self._seeds: OrderedDict[int, _Seed] = OrderedDict()
        self.unanswered = 0  # (Motion's: a replay answers every frame the recording carried)

    def reset(self) -> None:
        """A new session: nothing carried, seeds numbered afresh."""
        self._carrier = None
        self._seeds.clear()

    def seed(self, result: FrameResult, seed: int, capture_ns: int | None = None) -> None:
        self._keep(seed, _Seed(result, capture_ns, False))

    def keep_only(self, result: FrameResult, seed: int) -> None:
        self._keep(seed, _Seed(result, None, True))

    def seeded(self, record: dict) -> None:
        """The recording's motion thread took seed `record["seed"]` here."""
        s = self._seeds.get(record["seed"])
        if s is None:
            log.warning("the recording's motion thread took model result %d (frame %s), which the replay never "
                        "made: the rest of the session is not compared", record["seed"], record.get("frame"))
            self._on_unknown_seed(record)
            return
        if self._carrier is None:
            return
        if s.forget:
            self._carrier.forget(set(self._carrier.carried) - set(s.result.objects))
        else:
            self._carrier.seed(s.result, s.capture_ns)

    def frame(self, number: int, frame: Frame) -> None:
        t0 = time.perf_counter()
        if self._carrier is None or (self._carrier.width, self._carrier.height) != (frame.width, frame.height):
            self._carrier = Carrier(frame.width, frame.height)
        self._carrier.add(number, frame.capture_ns, frame.image)
        result = self._carrier.carry()
        self._on_answer(Carried(Numbered(number, frame, True), result, self._carrier.key_capture_ns,
                                (time.perf_counter() - t0) * 1e3))

    def renumbered(self, first_number: int) -> None:
        """(A replay's frames are the recording's, numbered as recorded.)"""

    def stop(self) -> None:
        """(Nothing runs on its own.)"""

    def _keep(self, seed: int, s: _Seed) -> None:
        self._seeds[seed] = s
        while len(self._seeds) > SEEDS_KEPT:
            self._seeds.popitem(last=False)
