"""Compiled artefacts (ONNX files, TensorRT plans) cached on disk, keyed by everything they depend on.

An entry is `<dir>/<kind>-<key>.<ext>` plus `<same>.json`, a manifest holding the key's inputs and
the artefact's sha256. A key that changes (other weights, config, size, precision, backend version,
device, the code that builds the graphs) names another file; an artefact whose hash does not match its
manifest is rebuilt, never loaded.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The code that builds the exported graphs (beside this file): a change to it names other artefacts, so a graph
# traced by older code is never reused.
GRAPH_SOURCES = ("export.py", "graphs.py", "memory_graph.py")


@functools.cache
def graph_code_digest() -> str:
    """sha256 over the source of GRAPH_SOURCES, as this samtrack has it."""
    h = hashlib.sha256()
    for name in GRAPH_SOURCES:
        h.update(name.encode() + b"\0" + (Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def user_cache_dir(name: str, override_env: str) -> Path:
    """$<override_env>, else $XDG_CACHE_HOME/samtrack/<name>, else ~/.cache/samtrack/<name>."""
    if os.environ.get(override_env):
        return Path(os.environ[override_env])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "samtrack" / name


def default_cache_dir() -> Path:
    """Where compiled artefacts go: $SAMTRACK_ENGINE_CACHE, else the XDG cache's samtrack/engines."""
    return user_cache_dir("engines", "SAMTRACK_ENGINE_CACHE")


def weights_digest(modules: dict[str, Any]) -> str:
    """sha256 over the parameter names, shapes and bytes of the modules an artefact bakes in."""
    h = hashlib.sha256()
    for prefix, module in modules.items():
        for name, t in sorted(module.state_dict().items()):
            h.update(f"{prefix}.{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ArtefactKey:
    """Everything a compiled encoder depends on."""

    kind: str  # "onnx" | "trt"
    weights: str  # weights_digest of the modules the artefact holds
    model_config: str  # e.g. Hiera widths/depths and image size, as text
    image_size: int
    precision: str  # "fp32" | "fp16"
    backend_version: str  # e.g. "onnx-1.23/torch-2.14" or "tensorrt-10.13"
    device: str  # "cpu" or the GPU's name
    code: str = field(default_factory=graph_code_digest)  # the code the graph was traced with

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:24]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ArtefactCache:
    """get_or_build(key, ext, build) -> path of a verified artefact (and of its companion files, e.g. an
    OpenVINO IR's .bin beside its .xml, each verified too)."""

    def __init__(self, directory: Path | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.hits = self.misses = self.rebuilds = 0

    def path_for(self, key: ArtefactKey, ext: str) -> Path:
        return self.directory / f"{key.kind}-{key.digest()}.{ext}"

    def get_or_build(self, key: ArtefactKey, ext: str, build: Callable[[Path], Path],
                     companions: tuple[str, ...] = ()) -> Path:
        """companions: suffixes of files `build` writes beside the artefact (its path with that suffix). Processes
        sharing the cache build an entry once: the first builds it under a lock, the others wait and load it."""
        path = self.path_for(key, ext)
        manifest = path.with_name(path.name + ".json")
        files = [path, *(path.with_suffix(c) for c in companions)]
        if self._verified(key, files, manifest):
            self.hits += 1
            return path
        self.directory.mkdir(parents=True, exist_ok=True)
        with locked(path.with_name(path.name + ".lock")):
            if self._verified(key, files, manifest):  # built by another process while this one waited
                self.hits += 1
                return path
            if manifest.is_file():
                log.warning("cached %s is corrupt or stale: rebuilding it", path.name)
                self.rebuilds += 1
            else:
                self.misses += 1
            manifest.unlink(missing_ok=True)
            build(path)
            tmp = manifest.with_name(manifest.name + ".tmp")
            tmp.write_text(json.dumps({"key": key.__dict__, "sha256": file_sha256(path),
                                       "companions": [file_sha256(f) for f in files[1:]]}, indent=2))
            tmp.replace(manifest)  # the manifest appears last: a crash mid-build leaves no valid entry
        return path

    @staticmethod
    def _verified(key: ArtefactKey, files: list[Path], manifest: Path) -> bool:
        """The entry's files exist and hash to what its manifest says, for this key."""
        if not (manifest.is_file() and all(f.is_file() for f in files)):
            return False
        try:
            meta = json.loads(manifest.read_text())
            digests = [file_sha256(f) for f in files]
        except (OSError, ValueError):
            return False
        return meta.get("key") == key.__dict__ and meta.get("sha256") == digests[0] \
            and meta.get("companions", []) == digests[1:]


DIGESTS = "digests.json"  # in a directory another program fills (OpenVINO's compiled blobs): file -> sha256


def drop_unverified(directory: Path) -> list[str]:
    """Before another program loads the files it cached in `directory` (OpenVINO maps its compiled blobs as they
    are): each file whose sha256 is not the one `record_digests` wrote, or that it never recorded (a write cut
    short), is deleted so that it is built again. The names deleted; OSError when a bad file cannot be deleted."""
    recorded = _digests(directory)
    dropped = []
    for path in _cached_files(directory):
        if recorded.get(path.name, {}).get("sha256") != file_sha256(path):
            path.unlink()
            dropped.append(path.name)
    return dropped


def record_digests(directory: Path) -> None:
    """The sha256 of each file in `directory` (those just built or rewritten in it included), for
    `drop_unverified`."""
    recorded = _digests(directory)
    digests = {}
    for path in _cached_files(directory):
        st = path.stat()
        entry = recorded.get(path.name, {})
        same = (entry.get("size"), entry.get("mtime_ns")) == (st.st_size, st.st_mtime_ns)  # verified as it is
        digests[path.name] = entry if same else {"sha256": file_sha256(path), "size": st.st_size,
                                                 "mtime_ns": st.st_mtime_ns}
    tmp = directory / (DIGESTS + ".tmp")
    tmp.write_text(json.dumps(digests, indent=2, sort_keys=True))
    tmp.replace(directory / DIGESTS)


def _cached_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*") if p.is_file() and not p.name.startswith(DIGESTS)) \
        if directory.is_dir() else []


def _digests(directory: Path) -> dict[str, dict]:
    try:
        data = json.loads((directory / DIGESTS).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if missing) while the block runs; released by the kernel if
    the process dies, so a killed builder never leaves the cache locked. A cache this process cannot write to is
    only read: no lock is needed."""
    try:
        f = open(path, "a")
    except OSError:
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process building %s", path.name.removesuffix(".lock"))
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
