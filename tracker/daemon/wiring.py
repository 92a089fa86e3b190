"""Building a daemon from its configuration: the tracker (model and backends), the source, the settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engines.cache import weights_digest

from .. import __version__
from ..concepts.types import ConceptError
from ..core.state import encode_state
from ..core.tracker import Tracker
from ..errors import SamtrackError
from ..models import weights
from ..protocol.curve import CurveServer
from ..recording.format import Manifest, keep_state
from ..recording.writer import Recorder, RecordSettings
from .concepting import StreamConcepts
from .config import Config, ConfigError, StreamSection
from .detecting import DetectorSettings, DetectorWorker
from .loop import Daemon, DaemonSettings
from .security import check_free
from .statedir import StateStore
from .stream import Stream

log = logging.getLogger(__name__)

# The feature window of a daemon with a detector, unless [memory] feature_window says otherwise: a detector's answer is
# applied on the frame it was asked on, which must still be in the window. On a 2-core CPU at 512 px a call took 7.8 s
# beside tracking, 17 to 22 model frames (docs/design.md): every answer fell out of the default 16. Each frame kept
# costs its backbone features (about 2 MB at 512 px in bf16: 100 MB for 48).
DETECTOR_FEATURE_WINDOW = 48


def settings_from(cfg: Config) -> DaemonSettings:
    return DaemonSettings(
        results=cfg.endpoints.results, commands=cfg.endpoints.commands, mask_encoding=cfg.output.mask_encoding,
        publish_queue=cfg.output.publish_queue,
        metrics_address=cfg.metrics.address if cfg.metrics.enabled else None, metrics_port=cfg.metrics.port,
        curve=CurveServer(cfg.auth.server_secret_key, cfg.auth.authorized_clients) if cfg.auth.curve else None,
        watchdog_stall_s=cfg.service.watchdog_stall_s, status_every_s=cfg.service.status_every_s,
        batch_streams=cfg.memory.batch_streams,
    )


def build_daemon(cfg: Config) -> Daemon:
    """The model and its engines once, a tracker per stream on them, then the sources (a bad model or backend
    fails before a camera is touched)."""
    settings = settings_from(cfg)
    check_free([settings.results, settings.commands],  # a busy port fails now, not after the model loaded
               (settings.metrics_address, settings.metrics_port) if settings.metrics_address is not None else None)
    checkpoint = weights.resolve_checkpoint(cfg.model.name, cfg.model.checkpoint)
    check_detector(cfg)
    m, mem, sections = cfg.model, cfg.memory, cfg.stream_sections()
    if mem.batch_streams and m.backend in ("onnxruntime", "tensorrt"):
        raise ConfigError(f"[memory] batch_streams needs backend torch, openvino or auto: the {m.backend} engine "
                          "takes one frame")
    # With a detector no window is under DETECTOR_FEATURE_WINDOW (the example config writes 16 explicitly)
    floor = DETECTOR_FEATURE_WINDOW if cfg.detector.model else 1
    options = [{"feature_window": max(sec.feature_window or mem.feature_window, floor),
                "max_cond_frames": mem.max_cond_frames, "batch_objects": mem.batch_objects, "precision": m.precision,
                "max_objects": mem.max_objects}
               for sec in sections]
    first = Tracker.build(m.name, checkpoint, m.image_size, m.device, threads=m.threads or None, backend=m.backend,
                          engine_cache=m.engine_cache or None, **options[0])
    trackers = [first, *(first.share(**o) for o in options[1:])]
    several = len(sections) > 1
    digest = weights_digest({"model": first.model})
    state_dir = cfg.state_dir(dict(os.environ))
    # The detector before any stream (its state, source, recorder): a failure from here on stops its process
    detector = start_detector(cfg)
    try:
        streams = [build_stream(cfg, sec, tracker, several, digest, state_dir)
                   for sec, tracker in zip(sections, trackers, strict=True)]
        return Daemon(streams, settings, detector=detector)
    except BaseException:
        if detector is not None:
            detector.close()
        raise


def build_stream(cfg: Config, sec: StreamSection, tracker: Tracker, several: bool, digest: str,
                 state_dir: Path | None) -> Stream:
    """One stream of the config on its tracker: its state restored, its concepts, its (not yet started) source and
    its recorder."""
    from pipelines.live import DEFAULT_BACKOFF, Backoff

    from ..recording.inputs import open_input

    state = StateStore(state_dir, sec.name, identity(cfg, tracker, sec.name, digest))
    state.load_into(tracker)  # before the first frame: its objects go on, numbering continues
    concepts = restored_concepts(sec.name, tracker, state, cfg.detector.model or None)
    # A recording's frames come at the pace they were captured, as its camera gave them. With several
    # streams a camera that cannot start is retried in the background while the others run.
    source = open_input(sec.source, realtime=True, stall_timeout_s=sec.stall_timeout_s, fail_fast=not several,
                        backoff=Backoff(sec.reconnect_initial_s, DEFAULT_BACKOFF.factor, sec.reconnect_max_s))
    motion = cfg.tracking.between_key_frames == "motion" and source.spec.live  # as Stream decides it
    recorder = None
    if cfg.record.directory:
        try:
            recorder = recorder_for(cfg, tracker, sec.name, several, digest, state, motion)
        except OSError as e:  # a full disk (or a vanished directory) never stops tracking
            log.error("stream %s: cannot start recording in %s (%s); tracking goes on unrecorded: free space "
                      "or fix the directory, then restart", sec.name, cfg.record.directory, e)
    preview = sec.preview_every if sec.preview_every >= 0 else cfg.output.preview_every
    return Stream(sec.name, source, tracker, preview_every=preview, recorder=recorder, state=state,
                  between_key_frames=cfg.tracking.between_key_frames,
                  motion_frames_kept=cfg.tracking.motion_frames_kept, concepts=concepts)


def check_detector(cfg: Config) -> None:
    """Before any model loads: a detector needs the concepts extra (its name was checked with the config)."""
    import importlib.util

    if cfg.detector.model and any(importlib.util.find_spec(m) is None for m in ("transformers", "open_clip")):
        raise SamtrackError(f"detector {cfg.detector.model} needs the concepts extra (transformers, open_clip_torch): "
                            "pip install 'samtrack[concepts]' (in a checkout: pip install -e '.[concepts]')")


def start_detector(cfg: Config) -> DetectorWorker | None:
    """The detector's process, started and ready (DetectorStartError when it cannot be), or None without one."""
    d = cfg.detector
    if not d.model:
        return None
    return DetectorWorker(DetectorSettings(d.model, d.device, d.threads, d.idle_priority))


def restored_concepts(stream: str, tracker: Tracker, state: StateStore, detector: str | None) -> StreamConcepts:
    """A stream's concepts, from its state directory when it kept some (a file that does not fit is set aside)."""
    concepts = StreamConcepts(stream, tracker, detector)
    data = state.load_concepts()
    if data is not None:
        try:
            concepts.restore(data)
        except ConceptError as e:
            state.refuse_concepts(str(e))
        else:
            log.info("stream %s: restored concepts %s", stream, [c.text for c in concepts.infos()])
    return concepts


def identity(cfg: Config, tracker: Tracker, stream: str, digest: str) -> dict:
    """What a stream's state must have been made with to be loaded here (and what else it records)."""
    return {"model": cfg.model.name, "weights_sha256": digest, "image_size": tracker.image_size,
            "precision": tracker.precision, "stream": stream, "samtrack": __version__}


def recorder_for(cfg: Config, tracker: Tracker, stream: str, several: bool, digest: str,
                 state: StateStore, motion: bool = False) -> Recorder:
    """The recorder of [record] for one stream (in a directory of its own when the daemon has several),
    with the manifest a replay needs to rebuild its tracker (and the state it started from, if restored)."""
    import dataclasses

    import torch

    r = cfg.record
    directory = Path(r.directory).expanduser() / (stream if several else "")
    restored = None
    if state.report is not None and state.report.restored_objects is not None:  # the session starts from it
        directory.mkdir(parents=True, exist_ok=True)
        restored = keep_state(directory, encode_state(tracker.snapshot(), state.identity))
    manifest = Manifest(samtrack=__version__, model=cfg.model.name, image_size=tracker.image_size,
                        weights_sha256=digest,
                        options={**dataclasses.asdict(tracker.options), "precision": tracker.precision},
                        precision=tracker.precision, threads=torch.get_num_threads(), stream=stream,
                        backend=tracker.backend, engines=tracker.engines.placement, device=str(tracker.device),
                        batch_streams=cfg.memory.batch_streams and several, restored_state=restored,
                        first_frame=tracker.latest_frame + 1 if tracker.latest_frame is not None else 0,
                        between_key_frames="motion" if motion else "drop",
                        motion_frames_kept=cfg.tracking.motion_frames_kept)
    settings = RecordSettings(directory, r.segment_s, int(r.segment_mb * 2**20), int(r.max_mb * 2**20),
                              r.queue_frames, r.idle_priority)
    return Recorder(settings, manifest)


def serve(cfg: Config) -> int:
    """Run a daemon from its configuration until SIGINT/SIGTERM or the end of its source; the exit code."""
    logging.getLogger().setLevel(cfg.logging.level)
    daemon = build_daemon(cfg)
    daemon.install_signal_handlers()
    daemon.run()
    log.info("stopped cleanly after %d frames", sum(st.stats.frames for st in daemon.streams.values()))
    return 0
