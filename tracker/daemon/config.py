"""The daemon's configuration: one TOML file, validated at start; command-line flags override it.

Every field has a default and a description; `samtrack config example` prints them as a commented
TOML file (systemd/samtrack.toml is that output)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.live import DEFAULT_BACKOFF, DEFAULT_STALL_TIMEOUT_S

from ..core.options import (
    BACKEND_CHOICES,
    DEFAULT_FEATURE_WINDOW,
    DEFAULT_MAX_COND_FRAMES,
    DEFAULT_MAX_OBJECTS,
    PRECISIONS,
)
from ..errors import SamtrackError
from ..paths import PathError, check_dir_to_write
from ..protocol import DEFAULT_COMMANDS, DEFAULT_RESULTS, MASK_ENCODINGS, MAX_STREAM_NAME, STREAM_NAME
from .stream import DEFAULT_MOTION_FRAMES_KEPT


class ConfigError(SamtrackError):
    """A configuration file that cannot be read or does not validate."""

    code = "bad_config"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_endpoint(value: str) -> str:
    if not value.startswith(("tcp://", "ipc://", "inproc://")):
        raise ValueError("must start with tcp://, ipc:// or inproc:// (e.g. tcp://127.0.0.1:5555)")
    if value.startswith("tcp://"):
        host, _, port = value[6:].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("tcp endpoints are tcp://HOST:PORT with PORT in 1..65535")
    return value


class StreamSection(_Section):
    name: str = Field("default", pattern=STREAM_NAME, max_length=MAX_STREAM_NAME,
                      description="Stream name: the results topic is results.<name>; one per camera (letters, "
                                  "digits, _ - ., not only dots).")
    source: str = Field("test:", description="Frame source: test:, a file, v4l2:/dev/videoN, rtsp://..., gst:..., or "
                                          "a recording's directory (its frames at their pace)")
    stall_timeout_s: float = Field(DEFAULT_STALL_TIMEOUT_S, gt=0,
                                   description="A live source without a frame this long is reconnected.")
    reconnect_initial_s: float = Field(DEFAULT_BACKOFF.initial_s, gt=0,
                                       description="First reconnection delay; doubles per failure.")
    reconnect_max_s: float = Field(DEFAULT_BACKOFF.max_s, gt=0,
                                   description="Longest delay between reconnection attempts.")
    feature_window: int = Field(0, ge=0, le=256, description="Recent frames a prompt may name on this stream; "
                                "0: [memory] feature_window.")
    preview_every: int = Field(-1, ge=-1, description="JPEG preview every N frames of this stream; "
                               "-1: [output] preview_every.")


class ModelSection(_Section):
    name: str = Field("sam2.1_hiera_t", description="Model: sam2[.1]_hiera_{t,s,b+,l} (see `samtrack weights list`).")
    checkpoint: str = Field("", description="Checkpoint file; empty: the cached one for `name`, else random weights.")
    image_size: int = Field(512, ge=64, multiple_of=32,
                            description="Model input size; Meta's is 1024, 512 keeps a CPU near real time.")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1 ...")
    threads: int = Field(0, ge=0, description="CPU threads for torch; 0 keeps torch's default.")
    backend: Literal[BACKEND_CHOICES] = Field(
        "auto", description="Engines: auto (OpenVINO on CPUs, torch or a built TensorRT plan on GPUs; torch with "
        "precision fp32), torch (Meta's modules; exact in fp32), openvino (CPU), onnxruntime (CPU), tensorrt (GPU).")
    engine_cache: str = Field("", description="Compiled engines' cache; empty: $XDG_CACHE_HOME/samtrack/engines.")
    precision: Literal[PRECISIONS] = Field(
        "auto", description="fp32: Meta's exact arithmetic (backend torch); bf16: the fast path (docs/engines.md "
        "tolerances); auto: bf16 on GPUs and CPUs that compute it natively, else fp32.")

    @field_validator("checkpoint")
    @classmethod
    def _exists(cls, v: str) -> str:
        if v and not Path(v).expanduser().is_file():
            raise ValueError(f"checkpoint file not found: {v} (download one with `samtrack weights download`)")
        return v


class MemorySection(_Section):
    feature_window: int = Field(DEFAULT_FEATURE_WINDOW, ge=1, le=256,
                                description="Recent frames a prompt may name (~0.5 s at 30 fps covers a click); "
                                "unset with a [detector]: 48, so a detector's answer finds its frame.")
    max_cond_frames: int = Field(DEFAULT_MAX_COND_FRAMES, ge=2, le=64,
                                 description="Prompted frames kept per object; bounds memory and attention cost.")
    max_objects: int = Field(DEFAULT_MAX_OBJECTS, ge=1, le=1024,
                             description="Objects tracked at once per stream; a new id beyond is refused "
                             "(too_many_objects): each object costs memory and step time.")
    batch_objects: bool = Field(False, description="Track all objects of a frame in one batch (for GPUs; "
                                "within 1e-5 of one at a time, measured slower on CPU).")
    batch_streams: bool = Field(False, description="Encode the frames of all streams of a turn in one batch "
                                "(backend torch; within 1e-5 of one at a time; see `samtrack bench streams`).")


class TrackingSection(_Section):
    between_key_frames: Literal["motion", "drop"] = Field(
        "motion", description="Live sources' frames the model does not take (it takes the newest whenever it is "
        "free): motion answers each with the newest model masks moved by its objects' motion; drop leaves them "
        "unanswered. Files give the model every frame either way.")
    motion_frames_kept: int = Field(
        DEFAULT_MOTION_FRAMES_KEPT, ge=1, le=1024,
        description="Frames answered by motion whose picture is kept, so that a prompt on one runs the model there "
        "(a viewer's click arrives within a second; each costs width x height x 3 bytes).")


class EndpointsSection(_Section):
    results: str = Field(DEFAULT_RESULTS, description="PUB socket for results and previews.")
    commands: str = Field(DEFAULT_COMMANDS, description="ROUTER socket for prompts and queries.")

    _v = field_validator("results", "commands")(lambda cls, v: _check_endpoint(v))

    @model_validator(mode="after")
    def _distinct(self):
        if self.results == self.commands:
            raise ValueError("results and commands must be different endpoints")
        return self


class OutputSection(_Section):
    mask_encoding: Literal[MASK_ENCODINGS] = Field("rle", description="Mask encoding on the wire: rle bits png none.")
    preview_every: int = Field(0, ge=0, description="Publish a JPEG preview every N frames (0: never).")
    publish_queue: int = Field(4, ge=0, le=64, description="Results waiting for the publisher thread (the oldest is "
                               "dropped and counted when full): a few absorb a slow encode; 0: publish on the "
                               "tracking thread.")


class MetricsSection(_Section):
    enabled: bool = Field(True, description="Serve Prometheus metrics over HTTP.")
    address: str = Field("127.0.0.1", description="Metrics HTTP address (loopback: scrape locally or via a proxy).")
    port: int = Field(9105, ge=0, le=65535, description="Metrics HTTP port (0: pick a free one).")


class LoggingSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level (any case).")

    _upper = field_validator("level", mode="before")(lambda cls, v: v.upper() if isinstance(v, str) else v)


class AuthSection(_Section):
    curve: bool = Field(False, description="Encrypt and authenticate both sockets with CurveZMQ.")
    server_secret_key: str = Field("", description="Server secret key file (from `samtrack keys generate`).")
    authorized_clients: str = Field("", description="Directory of client public key files allowed to connect.")

    @model_validator(mode="after")
    def _files(self):
        if self.curve:
            if not self.server_secret_key or not Path(self.server_secret_key).expanduser().is_file():
                raise ValueError(f"curve needs server_secret_key, a key file (got {self.server_secret_key!r})")
            if not self.authorized_clients or not Path(self.authorized_clients).expanduser().is_dir():
                raise ValueError(f"curve needs authorized_clients, a directory (got {self.authorized_clients!r})")
        return self


class RecordSection(_Section):
    directory: str = Field("", description="Record every frame (lossless), command and result here "
                           "(`samtrack replay DIR`); empty: no recording.")
    segment_s: float = Field(60.0, gt=0, description="A new segment after this many seconds: rotation granularity.")
    segment_mb: float = Field(1024.0, gt=0, description="... or once a segment's video is this large (MiB).")
    max_mb: float = Field(20480.0, gt=0, description="Oldest segments are deleted while the recording (kept "
                          "states included) is larger.")
    queue_frames: int = Field(8, ge=1, le=256, description="Frames waiting for the recorder's writer; more are "
                              "marked lost (never slows tracking).")
    idle_priority: bool = Field(True, description="The writer uses only CPU time tracking leaves idle (never "
                                "slows it; with every core busy, frames are lost); false: it competes for a "
                                "complete recording (tracking slows by the encoding's share, ~18 ms a 640x480 frame).")

    @field_validator("directory")
    @classmethod
    def _writable(cls, v: str) -> str:
        if v:
            try:
                check_dir_to_write(Path(v).expanduser(), "recording directory")
            except PathError as e:
                raise ValueError(str(e)) from None
        return v


class StateSection(_Section):
    enabled: bool = Field(True, description="Keep each stream's objects across restarts (crash, watchdog, upgrade).")
    dir: str = Field("", description="Where the streams' states are kept; empty: $STATE_DIRECTORY (systemd's "
                     "StateDirectory=, as the shipped units set it), else nothing is kept.")

    @field_validator("dir")
    @classmethod
    def _writable(cls, v: str) -> str:
        if v:
            try:
                check_dir_to_write(Path(v).expanduser(), "state directory")
            except PathError as e:
                raise ValueError(str(e)) from None
        return v


class DetectorSection(_Section):
    model: str = Field("", description="Open-vocabulary detector for concept prompts (add_concept): owlv2-base, "
                       "omdet-turbo, grounding-dino-tiny, sam3 (GPU); empty: none (add_concept is refused).")
    device: str = Field("cpu", description="torch device of the detector's process: cpu, cuda, cuda:1 ...")
    threads: int = Field(1, ge=1, le=256, description="torch threads of the detector's process: each more takes a "
                         "core from tracking while it runs (docs/design.md measures 1).")
    idle_priority: bool = Field(True, description="The detector's process runs only on CPU time tracking leaves "
                                "idle (SCHED_IDLE): tracking never slows, detector calls take longer while the "
                                "model is busy; false: it competes with tracking.")

    @field_validator("model")
    @classmethod
    def _known(cls, v: str) -> str:
        from ..models.detectors.registry import DETECTORS

        if v and v not in DETECTORS:
            raise ValueError(f"unknown detector {v!r}; known detectors: {', '.join(DETECTORS)}")
        return v


class ServiceSection(_Section):
    watchdog_stall_s: float = Field(10.0, gt=0,
                                    description="No frame tracked this long: stop watchdog pings (systemd restarts).")
    status_every_s: float = Field(5.0, gt=0, description="How often STATUS= is sent to systemd.")


class Config(_Section):
    stream: StreamSection = Field(default_factory=StreamSection)
    streams: list[StreamSection] = Field(default_factory=list)  # [[streams]]: several cameras, one model
    model: ModelSection = Field(default_factory=ModelSection)
    memory: MemorySection = Field(default_factory=MemorySection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    endpoints: EndpointsSection = Field(default_factory=EndpointsSection)
    output: OutputSection = Field(default_factory=OutputSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    record: RecordSection = Field(default_factory=RecordSection)
    state: StateSection = Field(default_factory=StateSection)
    detector: DetectorSection = Field(default_factory=DetectorSection)
    service: ServiceSection = Field(default_factory=ServiceSection)

    @model_validator(mode="after")
    def _one_kind_of_streams(self):
        if self.streams and "stream" in self.model_fields_set:
            raise ValueError("give [stream] (one camera) or [[streams]] (several), not both")
        names = [s.name for s in self.streams]
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must differ, got {names}")
        return self

    def stream_sections(self) -> list[StreamSection]:
        """The streams to serve: [[streams]], or the one [stream]."""
        return self.streams or [self.stream]

    def state_dir(self, env: dict[str, str]) -> Path | None:
        """The state directory, or None when no state is kept."""
        if not self.state.enabled:
            return None
        text = self.state.dir or env.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(text).expanduser() if text else None


def load_config(path: str | Path | None, overrides: dict[str, object] | None = None) -> Config:
    """The configuration from a TOML file (or defaults), with "section.field" overrides applied."""
    data: dict = {}
    where = "defaults"
    if path is not None:
        p = Path(path)
        where = str(p)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file {p}: {e}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from e
    for key, value in (overrides or {}).items():
        if "." not in key:  # a whole section (the command line's several --source NAME=URI: "streams")
            data[key] = value
            continue
        section, field = key.split(".")
        data.setdefault(section, {})[field] = value
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        lines = [f"{where}: {len(e.errors())} problem(s):"]
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                section = _section_of(err["loc"])
                msg = f"unknown key; allowed here: {', '.join(section.model_fields)}"
            lines.append(f"  {loc}: {msg} (got {err.get('input')!r})")
        raise ConfigError("\n".join(lines)) from e


def _section_of(loc) -> type[BaseModel]:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return model


def example_toml() -> str:
    """A commented TOML file with every field at its default."""
    out = ["# samtrack daemon configuration (`samtrack serve --config FILE`).",
           "# Every field is optional; shown here with its default. Flags given to `samtrack serve` win.", ""]
    for name, field in Config.model_fields.items():
        if name == "streams":
            out += ["# Several cameras in one daemon (one model): [[streams]] tables instead of [stream], each with",
                    "# the keys of [stream]; commands then name their stream (docs/protocol.md).",
                    "# [[streams]]", '# name = "door"', '# source = "rtsp://192.0.2.10/stream1"', "# [[streams]]",
                    '# name = "yard"', '# source = "v4l2:/dev/video0"', ""]
            continue
        section = field.annotation
        out.append(f"[{name}]")
        for fname, f in section.model_fields.items():
            out.append(f"# {f.description}")
            out.append(f"{fname} = {_toml_value(f.default)}")
        out.append("")
    return "\n".join(out)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)
