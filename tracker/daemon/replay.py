"""`samtrack replay DIR`: a recording through fresh trackers (one per recorded session), served and published
like a daemon; with verification, every result compared with the recorded one."""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import protocol as P
from ..core.state import StateError, TrackerState
from ..core.tracker import Tracker
from ..models import weights
from ..recording.format import Manifest, RecordingError, sessions
from ..recording.replay import FrameMap, RecordingSource
from ..recording.verify import Verifier
from .carrying import Carried
from .config import load_config
from .loop import Daemon
from .replay_motion import ReplayFeed, ReplayMotion
from .security import check_free
from .statedir import StateStore
from .stream import PROMPT_OPS, Stream
from .wiring import settings_from

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplaySettings:
    directory: Path
    verify: bool = False
    realtime: bool = False
    checkpoint: str | None = None  # None: the cached checkpoint of the recorded model
    precision: str | None = None  # None: each session's own (results then identical)
    backend: str | None = None  # None: each session's own
    device: str = "cpu"
    results: str = P.DEFAULT_RESULTS
    commands: str = P.DEFAULT_COMMANDS
    preview_every: int = 0


@dataclass(frozen=True)
class ReplayReport:
    frames: int
    seconds: float
    sessions: int
    precision: str  # the replay's (last session's)
    recorded_precision: str
    warnings: list[str]
    verifier: Verifier | None
    motion_frames: int = 0  # frames answered by motion again (sessions recorded so)


class _Trackers:
    """A fresh tracker per session; sessions recorded with the same model share its weights and engines."""

    def __init__(self, s: ReplaySettings, directory: Path):
        self.s, self.directory = s, directory
        self._built: dict[tuple, Tracker] = {}

    def fresh(self, m: Manifest) -> Tracker:
        options = {k: v for k, v in m.options.items() if k != "precision"}
        options["precision"] = self.s.precision or m.precision
        backend = self.s.backend or m.backend
        parts = m.compiled() if self.s.backend is None else None  # the session's own parts on its backend
        key = (m.model, m.image_size, m.weights_sha256, backend, parts, m.threads)
        if key in self._built:
            return self._built[key].share(**options)
        from engines.cache import weights_digest

        from ..build import build_parts
        from ..core.options import TrackerOptions

        checkpoint = weights.resolve_checkpoint(m.model, self.s.checkpoint)
        net, engines = build_parts(m.model, checkpoint, m.image_size, self.s.device, 0, m.threads, backend, None,
                                   options["precision"], parts)
        tracker = Tracker(net, TrackerOptions.from_model(net, **options), engines)
        if weights_digest({"model": tracker.model}) != m.weights_sha256:
            raise RecordingError(f"{self.directory} (session {m.session}) was recorded with other weights than "
                                 f"{checkpoint or 'seeded random'} for {m.model}: pass the recording's --checkpoint")
        self._built[key] = tracker
        return tracker


def replay(s: ReplaySettings) -> ReplayReport:
    """Replay (and verify) a recording until its end, SIGINT/SIGTERM, or the first divergence."""
    directory = s.directory
    newest = Manifest.read(directory)
    check_free([s.results, s.commands])  # before the models load
    trackers = _Trackers(s, directory)
    for m in sessions(directory):  # every engine built now: converting after GStreamer is loaded would crash
        trackers.fresh(m)
    source = RecordingSource(directory, realtime=s.realtime)
    stream = Stream(newest.stream, source, trackers.fresh(newest), preview_every=s.preview_every)
    stream.feed = ReplayFeed(source)  # key frames under their recorded numbers (sessions answered by motion)

    def identity(m: Manifest) -> dict:
        """The session's own: its states were made at its precision (restored at the replay's, dtypes cast)."""
        return {"model": m.model, "weights_sha256": m.weights_sha256, "image_size": m.image_size,
                "precision": m.precision, "stream": m.stream, "samtrack": m.samtrack}

    settings = settings_from(load_config(None, {  # the daemon's own defaults, with this command's endpoints
        "endpoints.results": s.results, "endpoints.commands": s.commands, "metrics.enabled": False}))
    verifier = Verifier(on_divergence=lambda text: daemon.stop()) if s.verify else None
    daemon = Daemon([stream], settings, on_result=verifier.on_result if verifier else None)
    recorded = [newest.precision]

    def answered(carried: Carried) -> None:
        """A frame of a session answered by motion, carried again: published like the daemon's, and compared."""
        daemon.seen_by_motion(stream, carried)
        if verifier is not None and carried.result is not None:
            verifier.on_result(carried.item.frame, carried.result)

    def unknown_seed(record: dict) -> None:
        if verifier is not None:
            verifier.gap("seeds")

    motion = ReplayMotion(answered, unknown_seed)
    source.on_motion_frame, source.on_seeded = motion.frame, motion.seeded

    def session(m: Manifest) -> None:
        """A recorded daemon run begins: a fresh tracker, frame numbers from 0, or from the state it restored."""
        stream.tracker = trackers.fresh(m)
        stream.state = StateStore(None, m.stream, identity(m))
        if m.restored_state is not None:  # its objects and numbering, as the daemon restored them
            stream.tracker.restore(stream.state.check(_read(directory, m.restored_state), stream.tracker),
                                   m.first_frame)
        elif m.first_frame:  # numbering only (a reservation, no object)
            stream.tracker.restore(TrackerState(m.first_frame, (), None))
        source.frames.base = m.first_frame
        motion.reset()
        stream.seeds = 0  # the daemon numbered its seeds from 1 in each run
        stream.motion = motion if m.between_key_frames == "motion" else None
        recorded[0] = m.precision
        t = stream.tracker
        if verifier is not None:
            verifier.session(m.exact_for(t.precision, t.backend, str(t.device), torch.get_num_threads(), False,
                                         t.engines.placement))
        log.info("replaying session %d (%s, %s)", m.session, t.precision, t.backend)

    def command(record: dict, frames: FrameMap) -> None:
        """A recorded command, through the daemon's own handler at the point it was served."""
        args = {k: v for k, v in record["args"].items() if k != "stream"}  # the replay serves one stream
        if source.keys is not None and record["op"] in PROMPT_OPS:
            if args.get("frame", "latest") == "latest":  # the newest frame then: the one the prompt landed on
                args["frame"] = record["reply"]["frame"]
            source.keys.until(args["frame"])  # its picture read (the motion thread had it when it was served)
        if isinstance(args.get("frame"), int):
            mapped = frames.replayed(args["frame"])
            if mapped is None:
                why = f"after frame {record['after_frame']}: {record['op']} names frame {args['frame']}, which the " \
                      "recording lost; the rest of the session is not compared"
                log.warning("%s", why)
                if verifier is not None:
                    verifier.stop_session(why)
                return
            args["frame"] = mapped
        if record["op"] == "import_state":
            return imported(record, frames)
        parts = [base64.b64decode(record["mask"])] if record.get("mask") else []
        done = daemon.handler.handle([P.request(0, record["op"], args), *parts])
        if done.result is None:
            failed(record, done.reply.decode())
        else:
            daemon.changed(stream, record["op"], done.result)  # revisions published, the motion seeded

    def imported(record: dict, frames: FrameMap) -> None:
        """A recorded import: the state it kept, restored at the frame number the daemon restored it at."""
        try:
            state = stream.state.check(_read(directory, record["args"]["state"]), stream.tracker)
        except StateError as e:
            return failed(record, str(e))
        stream.tracker.restore(state, record["reply"]["next_frame"])
        if not frames.identity:  # numbered as recorded (a session answered by motion): nothing to map afresh
            frames.first, frames.lost, frames.base = None, [], stream.tracker.latest_frame + 1
        daemon.changed(stream, "import_state", record["reply"])  # the motion thread forgets, as the daemon's did

    def failed(record: dict, reply: str) -> None:
        why = f"after frame {record['after_frame']}: {record['op']} failed on replay: {reply}"
        log.warning("%s", why)
        if verifier is not None and verifier.divergence is None:
            verifier.divergence = why
            daemon.stop()

    source.on_session, source.on_command = session, command
    if verifier is not None:
        source.on_expected, source.on_gap = verifier.on_expected, verifier.gap
    daemon.install_signal_handlers()
    t0 = time.monotonic()
    daemon.run()
    if verifier is not None:
        verifier.finish()
    return ReplayReport(daemon.stream.stats.frames, time.monotonic() - t0, source.sessions, stream.tracker.precision,
                        recorded[0], source.warnings, verifier, daemon.stream.stats.motion_frames)


def _read(directory: Path, name: str) -> bytes:
    """A state file the recording keeps (a session's start, an import)."""
    try:
        return (directory / name).read_bytes()
    except OSError as e:
        raise RecordingError(f"{directory / name} is missing or unreadable ({e}): the session cannot be replayed") \
            from e
