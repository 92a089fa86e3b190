"""Every path typed on the command line gets a clear error before any work starts.

TABLE has a row for every option of every subcommand and benchmark scenario that takes a path. Each row is swept
with the mistakes people make for its kind (a directory where a file is expected and the reverse, a missing
parent, an unwritable place, an existing file where a directory is to be made, an empty string, spaces in the
name): the command must end with exit code 2 and no traceback, its error line must name the path and say what to
do, and nothing may be written or deleted. Cases run in-process through `samtrack`'s main(), so each one that
reached a model or a measurement would show as a slow or failing test; two run as real processes.

The parsers themselves are read (test_every_path_option_has_a_row): an option that looks like a path and has no
row, or a row whose option uses no check of tracker/paths.py, fails with what to add."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import bench  # noqa: F401 - matplotlib before pyzmq and GStreamer (bench/__init__.py)
from tracker.cli.bench import SCENARIOS
from tracker.cli.main import build_parser, main
from tracker.paths import PathArg

ROOT = Path(__file__).resolve().parents[1]

# (command, option or positional) -> (kind, its command line with {} where the path goes). Kinds are PathArg.kind:
# file / dir: an existing one to read; new_file: a file to write in an existing directory (new_video: a video file,
# its extension one samtrack writes); new_file_mkdir: a file to write, its directories created; new_dir: a directory
# to create or reuse; source: a source argument.
# Other placeholders: {file} an existing file, {dir} an existing directory, {new} a file to write.
TABLE = {
    ("serve", "--config"): ("file", "serve --config {}"),
    ("serve", "--source"): ("source", "serve --source {}"),
    ("serve", "--checkpoint"): ("file", "serve --checkpoint {}"),
    ("serve", "--record"): ("new_dir", "serve --source test: --record {}"),
    ("serve", "--state"): ("new_dir", "serve --source test: --state {}"),
    ("state export", "file"): ("new_file", "state export {}"),
    ("state export", "--client-key"): ("file", "state export {new} --client-key {} --server-key {file}"),
    ("state export", "--server-key"): ("file", "state export {new} --client-key {file} --server-key {}"),
    ("state import", "file"): ("file", "state import {}"),
    ("state import", "--client-key"): ("file", "state import {file} --client-key {} --server-key {file}"),
    ("state import", "--server-key"): ("file", "state import {file} --client-key {file} --server-key {}"),
    ("state show", "file"): ("file", "state show {}"),
    ("config check", "file"): ("file", "config check {}"),
    ("broker", "--server-secret-key"): ("file", "broker --daemon a b --server-secret-key {} --authorized-clients ."),
    ("broker", "--authorized-clients"): ("dir", "broker --daemon a b --authorized-clients {}"),
    ("broker", "--client-key"): ("file", "broker --daemon a b --client-key {} --server-key {file}"),
    ("broker", "--server-key"): ("file", "broker --daemon a b --client-key {file} --server-key {}"),
    ("prompt", "--mask"): ("file", "prompt --object 1 --mask {}"),
    ("prompt", "--client-key"): ("file", "prompt --object 1 --point 1,1 --client-key {} --server-key {file}"),
    ("prompt", "--server-key"): ("file", "prompt --object 1 --point 1,1 --client-key {file} --server-key {}"),
    ("watch", "--video"): ("new_video", "watch --frames 1 --video {}"),
    ("watch", "--client-key"): ("file", "watch --frames 1 --client-key {} --server-key {file}"),
    ("watch", "--server-key"): ("file", "watch --frames 1 --client-key {file} --server-key {}"),
    ("objects", "--client-key"): ("file", "objects --client-key {} --server-key {file}"),
    ("objects", "--server-key"): ("file", "objects --client-key {file} --server-key {}"),
    ("remove", "--client-key"): ("file", "remove --object 1 --client-key {} --server-key {file}"),
    ("remove", "--server-key"): ("file", "remove --object 1 --client-key {file} --server-key {}"),
    ("reset", "--client-key"): ("file", "reset --client-key {} --server-key {file}"),
    ("reset", "--server-key"): ("file", "reset --client-key {file} --server-key {}"),
    ("stats", "--client-key"): ("file", "stats --client-key {} --server-key {file}"),
    ("stats", "--server-key"): ("file", "stats --client-key {file} --server-key {}"),
    ("view", "--client-key"): ("file", "view --port 0 --client-key {} --server-key {file}"),
    ("view", "--server-key"): ("file", "view --port 0 --client-key {file} --server-key {}"),
    ("keys generate", "directory"): ("new_dir", "keys generate {}"),
    ("keys authorize", "public_key"): ("file", "keys authorize {} {dir}"),
    ("keys authorize", "directory"): ("new_dir", "keys authorize {file} {}"),
    ("export", "--checkpoint"): ("file", "export --image-size 128 --checkpoint {}"),
    ("export", "--engine-cache"): ("new_dir", "export --image-size 128 --engine-cache {}"),
    ("track", "source"): ("source", "track {} --point 1,1 --masks {new} --image-size 128"),
    ("track", "--prompts"): ("file", "track test: --frames 1 --prompts {} --masks {new} --image-size 128"),
    ("track", "--out"): ("new_video", "track test: --frames 1 --point 1,1 --out {} --image-size 128"),
    ("track", "--masks"): ("new_file", "track test: --frames 1 --point 1,1 --masks {} --image-size 128"),
    ("track", "--checkpoint"): ("file", "track test: --frames 1 --point 1,1 --masks {new} --checkpoint {}"),
    ("segment", "image"): ("file", "segment {} --point 1,1 --out {new} --image-size 128"),
    ("segment", "--out"): ("new_file", "segment {file} --point 1,1 --out {} --image-size 128"),
    ("segment", "--overlay"): ("new_file", "segment {file} --point 1,1 --out {new} --overlay {} --image-size 128"),
    ("segment", "--checkpoint"): ("file", "segment {file} --point 1,1 --out {new} --checkpoint {}"),
    ("replay", "directory"): ("dir", "replay {}"),
    ("replay", "--checkpoint"): ("file", "replay {dir} --checkpoint {}"),
    ("sources probe", "source"): ("source", "sources probe {}"),
    ("weights list", "--cache-dir"): ("dir", "weights list --cache-dir {}"),
    ("weights download", "--cache-dir"): ("new_dir", "weights download sam2.1_hiera_t --cache-dir {}"),
    **{(f"bench {name}", "--out"): ("new_file_mkdir", f"bench {name} --quick --out {{}}") for name in SCENARIOS
       if name not in ("memory", "engines", "gpu", "motion", "concepts")},
    ("bench motion", "--out"): ("new_dir", "bench motion --quick --out {}"),  # a directory: motion.json and .png
    ("bench concepts", "--out"): ("new_dir", "bench concepts --quick --out {}"),  # a directory: concepts.json
    ("bench memory", "--out"): ("new_file_mkdir", "bench memory --frames 2 --out {}"),
    ("bench gpu", "--out"): ("new_file_mkdir", "bench gpu --out {}"),
    ("bench record", "--keep"): ("new_dir", "bench record --quick --keep {}"),
    ("bench engines", "--out"): ("new_file_mkdir", "bench engines --sizes 64 --out {}"),
    ("bench engines", "--engine-cache"): ("new_dir", "bench engines --sizes 64 --engine-cache {} --out {new}"),
    ("bench step", "--source"): ("source", "bench step --quick --source {} --out {new}"),
    ("bench e2e", "--source"): ("source", "bench e2e --quick --source {} --out {new}"),
    ("bench chaos", "--chromium"): ("file", "bench chaos --quick --chromium {} --out {new}"),
}

# Options whose name, metavar or help looks like a path's but that take none ("*": in every command).
NOT_PATHS = {
    ("bench e2e", "--min-key-frames"): "a count of model answers (its name holds \"frames\")",
    ("*", "--image-size"): "the model's input size in pixels",
    ("*", "--mask-encoding"): "how masks go on the wire (rle, bits, png, none)",
    ("*", "--precision"): "fp32, bf16 or auto (its help says \"fast path\")",
    ("weights download", "--base-url"): "the URL of a directory to download from",
    ("serve", "--no-state"): "a switch: keep no state",
    ("serve", "--between-key-frames"): "motion or drop (its help says \"frames\")",
    ("track", "--key-frame-every"): "a number of frames",
}

# The extra mistakes some rows can meet beyond their kind's.
EXTRA_CASES = {
    **{(f"bench {name}", "--out"): ("beside_is_dir",) for name in SCENARIOS
       if name not in ("memory", "engines", "gpu", "motion", "concepts", "int8")},  # (no PNG beside)
    ("bench gpu", "--out"): ("results_is_file",),
    ("serve", "--source"): ("named_missing",),
}

CASES = {
    "file": ("missing", "dir_for_file", "empty", "spaces"),
    "dir": ("missing", "file_for_dir", "empty", "spaces"),
    "new_file": ("dir_for_file", "missing_parent", "parent_is_file", "unwritable", "empty", "spaces"),
    "new_video": ("dir_for_file", "missing_parent", "parent_is_file", "unwritable", "empty", "spaces", "not_a_video"),
    "new_file_mkdir": ("dir_for_file", "parent_is_file", "unwritable", "empty", "spaces"),
    "new_dir": ("file_for_dir", "parent_is_file", "unwritable", "empty", "spaces"),
    "source": ("missing", "dir_for_file", "empty", "spaces"),
}

PATH_WORDS = {"out", "mask", "masks", "record", "config", "checkpoint", "key", "cache", "prompts", "overlay", "video",
              "source", "image", "file", "dir", "directory", "folder", "path", "chromium", "browser", "state",
              "clients", "url"}
PATH_HELP = re.compile(r"\b(file|files|directory|folder|path)\b", re.I)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    (p / "kept.txt").write_text("not to be touched")
    return p


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("not to be touched")
    return p


def _bad_path(case: str, kind: str, s: Path, locked: Path | None) -> tuple[str, str]:
    """(the argument, what the error line must contain) for one mistake; files it needs are made under s."""
    wants_dir = kind in ("dir", "new_dir")
    if case == "missing":
        return str(s / "no-such-thing"), str(s / "no-such-thing")
    if case == "dir_for_file":
        return (p := str(_mkdir(s / "a-folder"))), p
    if case == "file_for_dir":
        return (p := str(_touch(s / "a-file.txt"))), p
    if case == "missing_parent":
        return (p := str(s / "no-such-folder" / "out.json")), p
    if case == "parent_is_file":
        return (p := str(_touch(s / "a-file.txt") / "sub" / "out.json")), p
    if case == "unwritable":
        return (p := str(locked / "out.json")), p
    if case == "empty":
        return "", "empty"
    if case == "spaces":  # the kind's first mistake, with spaces in every name
        if kind in ("new_file", "new_file_mkdir", "new_video"):
            return (p := str(_mkdir(s / "my results" / "run 1.json"))), p
        if kind == "new_dir":
            return (p := str(_touch(s / "my keys" / "server key"))), p
        return (p := str(_mkdir(s / "my files") / ("no such dir" if wants_dir else "no such file.mp4"))), p
    if case == "not_a_video":
        return (p := str(s / "run 1.gif")), p
    if case == "beside_is_dir":
        _mkdir(s / "results.png")
        return (p := str(s / "results.json")), p
    if case == "results_is_file":  # bench gpu writes each run's files in a folder named as --out without .json
        (s / "results").write_text("a file where the folder goes")
        return (p := str(s / "results.json")), p
    if case == "named_missing":
        return f"cam={s / 'no such.mp4'}", str(s / "no such.mp4")
    raise AssertionError(case)


def _argv(template: str, s: Path, path: str) -> list[str]:
    fill = {"{}": path, "{file}": str(_touch(s / "valid file.txt")), "{dir}": str(_mkdir(s / "valid dir")),
            "{new}": str(s / "new output.json")}
    return [fill.get(t, t) for t in template.split()]


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under root: its type, size and modification time (a directory's changes when an entry is added
    or removed, even for a moment)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            st = os.lstat(os.path.join(d, name))
            out[os.path.relpath(os.path.join(d, name), root)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return out


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("samtrack") and "error:" in ln]
    assert lines, f"no `samtrack ...: error:` line in stderr:\n{stderr[-3000:]}"
    return lines[-1]


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A directory nobody running the tests can write in, or None. Root writes through permissions, so as root
    this is /proc/self, where no file can be created."""
    if os.geteuid() != 0:
        d = tmp_path_factory.mktemp("locked")
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    d = Path("/proc/self")
    try:
        (d / "probe").open("w").close()
    except OSError:
        yield None if os.access(d, os.W_OK) else d
        return
    yield None


def _params():
    for key, (kind, _) in sorted(TABLE.items()):
        for case in CASES[kind] + EXTRA_CASES.get(key, ()):
            yield pytest.param(key, case, id=f"{key[0]} {key[1]} [{case}]")


@pytest.mark.timeout(180)  # in-process: a check that no longer runs first would start the real work
@pytest.mark.parametrize("key, case", list(_params()))
def test_a_bad_path_is_refused_before_any_work(key, case, tmp_path, monkeypatch, capsys, locked):
    kind, template = TABLE[key]
    if case == "unwritable" and locked is None:
        pytest.skip("no directory here refuses writes to this user")
    scratch = tmp_path / "scratch"
    monkeypatch.chdir(_mkdir(scratch / "cwd"))  # relative defaults land here, inside the snapshot
    path, named = _bad_path(case, kind, scratch, locked)
    argv = _argv(template, scratch, path)
    before = _tree(scratch)
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    except Exception as e:  # noqa: BLE001 - what a user would see as a traceback
        pytest.fail(f"samtrack {' '.join(argv)}: {type(e).__name__} reached the user as a traceback: {e}")
    err = capsys.readouterr().err
    line = _error_line(err)
    assert code == 2, f"exit {code}: {err[-2000:]}"
    assert named in line, f"the error does not name {named!r}: {line}"
    assert re.search(r"\bgive\b", line), f"the error does not say what to give instead: {line}"
    assert "Traceback" not in err
    assert _tree(scratch) == before, "something was written or deleted"


def _good_path(kind: str, s: Path) -> str:
    """A path of the kind that must be taken as it is (spaces included)."""
    if kind in ("file", "source"):
        return str(_touch(s / "my files" / "clip one.mp4"))
    if kind == "dir":
        return str(_mkdir(s / "my dir"))
    if kind == "new_file":
        return str(_mkdir(s / "my results") / "run 1.json")
    if kind == "new_video":
        return str(_mkdir(s / "my results") / "run 1.mp4")
    if kind == "new_file_mkdir":
        return str(s / "new results" / "today" / "run 1.json")
    return str(s / "new dir" / "sub dir")


def _parse(argv: list[str]) -> argparse.Namespace:
    if argv[0] == "bench":
        return importlib.import_module(SCENARIOS[argv[1]]).parser().parse_args(argv[2:])
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("key", sorted(TABLE), ids=" ".join)
def test_a_good_path_is_taken_as_typed(key, tmp_path, monkeypatch):
    """Valid paths (with spaces, in directories still to be made where the option makes them) parse unchanged and
    checking them writes nothing."""
    kind, template = TABLE[key]
    scratch = tmp_path / "scratch"
    monkeypatch.chdir(_mkdir(scratch / "cwd"))
    path = _good_path(kind, scratch)
    argv = _argv(template, scratch, path)
    before = _tree(scratch)
    ns = _parse(argv)
    action = _options()[key]
    assert getattr(ns, action.dest) in (path, [path])
    assert _tree(scratch) == before


def _walk(parser: argparse.ArgumentParser, command: str, found: dict) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                _walk(sub, f"{command} {name}".strip(), found)
        elif not isinstance(action, argparse._HelpAction):
            label = max(action.option_strings, key=len) if action.option_strings else action.dest
            found[(command, label)] = action


def _options() -> dict[tuple[str, str], argparse.Action]:
    """Every option and positional of every subcommand and benchmark scenario, by (command, label)."""
    found: dict = {}
    _walk(build_parser(), "", found)
    for name, module in SCENARIOS.items():
        scenario = importlib.import_module(module)
        assert hasattr(scenario, "parser"), f"{module}: give it a parser() apart from main() (as bench/step.py)"
        _walk(scenario.parser(), f"bench {name}", found)
    return found


def _looks_like_a_path(action: argparse.Action) -> bool:
    names = [action.dest, *action.option_strings, *(action.metavar if isinstance(action.metavar, tuple)
                                                     else [action.metavar or ""])]
    words = {w.lower() for n in names for w in re.split(r"[-_\W]+", n) if w}
    return isinstance(action.type, PathArg) or bool(words & PATH_WORDS) or bool(PATH_HELP.search(action.help or ""))


def test_every_path_option_has_a_row():
    options = _options()
    listed = set(TABLE) | {k for k in NOT_PATHS if k[0] != "*"}
    anywhere = {k[1] for k in NOT_PATHS if k[0] == "*"}
    missing = sorted(k for k, a in options.items()
                     if _looks_like_a_path(a) and k not in listed and k[1] not in anywhere)
    assert not missing, (
        f"path options without a row: {missing}. Give each a type from tracker/paths.py (existing_file, "
        "existing_dir, file_to_write, dir_to_write; a source: tracker.recording.inputs.source_arg) and a row in TABLE "
        "of tests/test_cli_paths.py; or, if it takes no path, list it in NOT_PATHS with why")
    stale = sorted(k for k in listed if k not in options) + sorted(
        k for k in NOT_PATHS if k[0] == "*" and not any(o[1] == k[1] for o in options))
    assert not stale, f"rows for options that no longer exist: {stale}: remove them"
    wrong = sorted(f"{k}: {getattr(options[k].type, 'kind', options[k].type)} (row: {kind})"
                   for k, (kind, _) in TABLE.items() if getattr(options[k].type, "kind", None) != kind)
    assert not wrong, f"options whose type is not their row's kind of path: {wrong}"


def _samtrack(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("args, make", [
    (["bench", "step", "--quick", "--out"], lambda s: _mkdir(s / "results")),
    (["serve", "--source", "test:", "--image-size", "128", "--no-metrics", "--record"],
     lambda s: _touch(s / "recording")),
], ids=["bench-out-directory", "serve-record-file"])
def test_a_real_process_ends_with_one_line_and_no_traceback(args, make, tmp_path):
    """The issue's cases as a user runs them: exit 2 within seconds, the path named, no traceback."""
    path = make(tmp_path)
    before = _tree(tmp_path)
    r = _samtrack(*args, str(path), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert str(path) in _error_line(r.stderr)
    assert _tree(tmp_path) == before
