"""Meta's released checkpoints: a local cache (XDG) and resumable, size-checked downloads."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from engines.cache import user_cache_dir

from ..errors import DownloadError
from .registry import MODELS, ModelSpec, model_spec

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes read per network read: small enough for a smooth progress bar
TIMEOUT_S = 30.0  # per socket operation; a stalled server fails instead of hanging forever


def cache_dir() -> Path:
    """$SAMTRACK_CACHE_DIR, else $XDG_CACHE_HOME/samtrack/checkpoints, else ~/.cache/samtrack/checkpoints."""
    return user_cache_dir("checkpoints", "SAMTRACK_CACHE_DIR")


@dataclass(frozen=True)
class CachedModel:
    """A released model and where its checkpoint is (or would be) cached."""

    spec: ModelSpec
    path: Path

    @property
    def present(self) -> bool:
        return self.path.is_file()


def list_models(directory: Path | None = None) -> list[CachedModel]:
    d = directory or cache_dir()
    return [CachedModel(s, d / s.filename) for s in MODELS.values()]


def random_weights_warning(name: str) -> str:
    """What every command says when a model runs without a checkpoint (seeded random weights)."""
    return (f"no checkpoint for {name} (none given, none cached in {cache_dir()}): seeded RANDOM weights, every "
            f"mask is MEANINGLESS; get Meta's with `samtrack weights download {name}`")


def checkpoint_path(name: str, directory: Path | None = None) -> Path:
    """Where the checkpoint of a model name is cached (whether or not it is there)."""
    return (directory or cache_dir()) / model_spec(name).filename


def resolve_checkpoint(name: str, explicit: str | os.PathLike | None) -> str | None:
    """The checkpoint to load: the one given, else the cached one for the model, else None (random weights)."""
    if explicit:
        return str(explicit)
    cached = checkpoint_path(name)
    return str(cached) if cached.is_file() else None


def download(
    name: str,
    base_url: str | None = None,
    directory: Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download a model's checkpoint into the cache and return its path.

    A partial download (<file>.part) is resumed with an HTTP Range request; a server that ignores
    Range restarts it cleanly. The file appears under its final name only once its size matches
    the server's, by an atomic rename.
    """
    spec = model_spec(name)
    url = f"{base_url.rstrip('/')}/{spec.filename}" if base_url else spec.url
    dest = (directory or cache_dir()) / spec.filename
    if dest.is_file() and not force:
        log.info("%s already cached at %s", spec.name, dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is not a prefix the server can continue
            part.unlink()
            return download(name, base_url, directory, force, progress)
        raise DownloadError(f"download of {spec.name} failed: HTTP {e.code} {e.reason} for {url}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"cannot reach {url}: {getattr(e, 'reason', e)}. Check the network or --base-url") from e
    with resp:
        if resp.status == 206:
            total = have + int(resp.headers.get("Content-Length", -1))
            mode = "ab"
        else:  # 200: the server sends the whole file
            if have:
                log.info("server ignored the resume request: restarting %s", spec.filename)
            have, mode = 0, "wb"
            total = int(resp.headers.get("Content-Length", -1))
        _copy(resp, part, mode, have, total if total >= 0 else None, spec.filename, progress)
    size = part.stat().st_size
    if total >= 0 and size != total:
        raise DownloadError(
            f"download of {spec.name} is incomplete: {size} of {total} bytes. Run the same command "
            f"again to resume it."
        )
    os.replace(part, dest)
    log.info("saved %s (%d bytes)", dest, size)
    return dest


def _copy(resp, part: Path, mode: str, have: int, total: int | None, label: str, progress: bool) -> None:
    with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                     desc=label, disable=not progress) as bar:
        while True:
            try:
                chunk = resp.read(CHUNK)
            except OSError as e:  # connection reset or timeout mid-file: keep what we have
                raise DownloadError(f"connection lost while downloading {label}: {e}. Run again to resume.") from e
            if not chunk:
                return
            f.write(chunk)
            bar.update(len(chunk))
