"""Checkpoint downloads against a real HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.httpserver import FileServer
from tracker import Tracker
from tracker.errors import DownloadError
from tracker.models import build_sam2_model
from tracker.models.detectors import DETECTORS
from tracker.models.weights import cache_dir, download, list_models

NAME, FILE = "sam2.1_hiera_t", "sam2.1_hiera_tiny.pt"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """A folder holding a real checkpoint in Meta's format (random tiny weights), as Meta names it."""
    root = tmp_path_factory.mktemp("served")
    torch.save({"model": build_sam2_model(NAME, image_size=64, seed=11).state_dict()}, root / FILE)
    return root


def test_download_then_load(served, tmp_path):
    with FileServer(served) as srv:
        path = download(NAME, base_url=srv.url, directory=tmp_path, progress=False)
    assert path == tmp_path / FILE and path.read_bytes() == (served / FILE).read_bytes()
    assert not (tmp_path / (FILE + ".part")).exists()
    tracker = Tracker.build(NAME, checkpoint=path, image_size=64)  # a real load of what was downloaded
    assert tracker.objects == []


def test_resume_sends_range_and_fetches_only_the_rest(served, tmp_path):
    data = (served / FILE).read_bytes()
    (tmp_path / (FILE + ".part")).write_bytes(data[:1000])
    with FileServer(served) as srv:
        path = download(NAME, base_url=srv.url, directory=tmp_path, progress=False)
    assert srv.log.requests == [(f"/{FILE}", "bytes=1000-")]
    assert path.read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(served, tmp_path):
    data = (served / FILE).read_bytes()
    (tmp_path / (FILE + ".part")).write_bytes(b"garbage" * 10)
    with FileServer(served, ignore_range=True) as srv:
        path = download(NAME, base_url=srv.url, directory=tmp_path, progress=False)
    assert path.read_bytes() == data


def test_truncated_download_is_not_installed_and_resumes(served, tmp_path):
    data = (served / FILE).read_bytes()
    with FileServer(served, truncate_at=5000) as srv:
        with pytest.raises(DownloadError, match="incomplete: 5000 of"):
            download(NAME, base_url=srv.url, directory=tmp_path, progress=False)
    assert not (tmp_path / FILE).exists()
    assert (tmp_path / (FILE + ".part")).stat().st_size == 5000
    with FileServer(served) as srv:  # the next run resumes from byte 5000
        download(NAME, base_url=srv.url, directory=tmp_path, progress=False)
        assert srv.log.requests == [(f"/{FILE}", "bytes=5000-")]
    assert (tmp_path / FILE).read_bytes() == data


def test_partial_longer_than_file_restarts(served, tmp_path):
    data = (served / FILE).read_bytes()
    (tmp_path / (FILE + ".part")).write_bytes(b"x" * (len(data) + 10))
    with FileServer(served) as srv:
        path = download(NAME, base_url=srv.url, directory=tmp_path, progress=False)
    assert path.read_bytes() == data


def test_http_404_and_unreachable_server(tmp_path):
    with FileServer(tmp_path / "empty") as srv:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(NAME, base_url=srv.url, directory=tmp_path, progress=False)
        port = srv.httpd.server_address[1]
    with pytest.raises(DownloadError, match="cannot reach"):
        download(NAME, base_url=f"http://127.0.0.1:{port}", directory=tmp_path, progress=False)


def test_cached_file_is_not_downloaded_again(served, tmp_path):
    (tmp_path / FILE).write_bytes(b"cached")
    with FileServer(served) as srv:
        assert download(NAME, base_url=srv.url, directory=tmp_path).read_bytes() == b"cached"
        assert srv.log.requests == []


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("SAMTRACK_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "samtrack" / "checkpoints"
    monkeypatch.setenv("SAMTRACK_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def _samtrack(*args, env):
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_cli_download_and_list(served, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("SAMTRACK_CACHE_DIR", None)
    with FileServer(served) as srv:
        r = _samtrack("weights", "download", "sam2.1_hiera_tiny", "--base-url", srv.url, env=env)
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "samtrack" / "checkpoints" / FILE
    assert r.stdout.strip() == str(dest) and dest.is_file()
    assert "B/s" in r.stderr or "100%" in r.stderr  # the progress bar
    r = _samtrack("weights", "list", env=env)
    assert f"{NAME:16s} {FILE:26s} yes, {dest}" in r.stdout
    assert len(r.stdout.splitlines()) == len(list_models()) + len(DETECTORS) + 3  # and two headers, a blank line


def test_cli_download_errors_are_clear(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    r = _samtrack("weights", "download", "sam9_huge", env=env)
    assert r.returncode == 2 and "unknown model 'sam9_huge'" in r.stderr
    with FileServer(tmp_path) as srv:
        r = _samtrack("weights", "download", NAME, "--base-url", srv.url, env=env)
    assert r.returncode == 2 and "HTTP 404" in r.stderr and "Traceback" not in r.stderr


def test_resolve_checkpoint_prefers_explicit_then_cache(monkeypatch, tmp_path):
    from tracker.models.weights import resolve_checkpoint

    monkeypatch.setenv("SAMTRACK_CACHE_DIR", str(tmp_path))
    assert resolve_checkpoint(NAME, None) is None  # nothing cached: random weights
    (tmp_path / FILE).write_bytes(b"x")
    assert resolve_checkpoint(NAME, None) == str(tmp_path / FILE)
    assert resolve_checkpoint(NAME, "/my/own.pt") == "/my/own.pt"
