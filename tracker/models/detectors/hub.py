"""Detector weights from the Hugging Face hub: downloaded into samtrack's cache (resumed by the hub's client), the
files each needs checked, and the snapshot pinned by a manifest (commit and file sizes) that loading checks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ...errors import CheckpointError, DownloadError
from ..weights import cache_dir
from .registry import detector_spec

log = logging.getLogger(__name__)

# What a download fetches: configs, tokenizer files (vocab.json, merges.txt, vocab.txt, tokenizer.json) and the
# safetensors weights; never the same weights again as pytorch_model.bin, TensorFlow or Flax files.
PATTERNS = ["*.json", "*.txt", "*.safetensors"]
REQUIRED = ("config.json", "preprocessor_config.json")  # besides at least one *.safetensors file


def hub_dir(directory: Path | None = None) -> Path:
    """Where detector snapshots live: the checkpoint cache's hub/ (the hub client's layout) and a manifest each."""
    return (directory or cache_dir()) / "hub"


def manifest_path(name: str, directory: Path | None = None) -> Path:
    return hub_dir(directory) / f"{name}.json"


def detector_random_weights_warning(name: str, directory: Path | None = None) -> str:
    """What loading a detector without downloaded weights says (seeded random weights), like SAM 2's warning."""
    return (f"no weights for {name} (none cached in {hub_dir(directory)}): seeded RANDOM weights, every detection "
            f"is MEANINGLESS; get the hub's with `samtrack weights download {name}`")


def cached_snapshot(name: str, directory: Path | None = None) -> Path | None:
    """The downloaded snapshot of a detector, or None; CheckpointError if its files no longer match the manifest."""
    manifest = manifest_path(name, directory)
    if not manifest.is_file():
        return None
    m = json.loads(manifest.read_text())
    root = Path(m["path"])
    bad = [f for f, size in m["files"].items() if not (root / f).is_file() or (root / f).stat().st_size != size]
    if bad:
        raise CheckpointError(f"the downloaded files of {name} in {root} are missing or changed ({', '.join(bad[:3])})"
                              f": run `samtrack weights download {name} --force`")
    return root


def download_detector(name: str, endpoint: str | None = None, directory: Path | None = None,
                      revision: str = "main", force: bool = False, progress: bool = True) -> Path:
    """Download a detector's files from the hub (or the mirror at `endpoint`) and return the snapshot's folder.

    An interrupted download resumes on the next call (the hub client keeps partial files); a cached snapshot is
    not fetched again unless `force`. The files REQUIRED and a safetensors file must be there; the manifest records
    the commit the revision named and every file's size."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import disable_progress_bars

    spec = detector_spec(name)
    if not force and (cached := cached_snapshot(name, directory)) is not None:
        log.info("%s already cached at %s", name, cached)
        return cached
    if not progress:
        disable_progress_bars()
    where = endpoint or "the Hugging Face hub"
    try:
        root = Path(snapshot_download(spec.repo, revision=revision, cache_dir=hub_dir(directory),
                                      allow_patterns=PATTERNS, endpoint=endpoint, force_download=force))
    except GatedRepoError as e:
        raise DownloadError(f"{spec.repo} is gated: accept its licence at https://huggingface.co/{spec.repo}, then "
                            "log in (`hf auth login`) or set HF_TOKEN, and run the same command again") from e
    except LocalEntryNotFoundError as e:  # no connection, or HF_HUB_OFFLINE=1
        raise DownloadError(f"cannot reach {where} for {spec.repo} ({e.__cause__ or e}). Check the network, "
                            "--base-url (a hub mirror) and HF_HUB_OFFLINE; run again to resume") from e
    except (HfHubHTTPError, OSError) as e:
        raise DownloadError(f"download of {name} ({spec.repo}) from {where} failed: {str(e).splitlines()[0]}. "
                            "Run again to resume") from e
    files = {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
    missing = [f for f in REQUIRED if f not in files] + ([] if any(f.endswith(".safetensors") for f in files)
                                                        else ["*.safetensors"])
    if missing:
        raise DownloadError(f"{spec.repo} at {revision} lacks {', '.join(missing)}: not a transformers detector")
    manifest = manifest_path(name, directory)
    manifest.write_text(json.dumps({"repo": spec.repo, "revision": revision, "commit": root.name,
                                    "path": str(root), "files": files}, indent=1))
    log.info("saved %s (%s, commit %s, %d files)", name, spec.repo, root.name, len(files))
    return root
