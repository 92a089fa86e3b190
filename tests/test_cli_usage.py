"""What a new user meets on the command line: a busy port, bad numbers, a missing prompt or daemon end in one
line and exit code 2 before any model loads; every option says what it is for; Ctrl-C says what was kept."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _samtrack(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _samtrack_here(*args: str) -> subprocess.CompletedProcess:
    """`samtrack ARGS` run in this process, for a command refused before any model loads or socket opens (as its
    arguments are parsed or its prompts checked): a process of its own spent 1-4 s importing, torch for most. Its
    log goes to its stderr at INFO as in `samtrack` (whose logging.basicConfig adds nothing where pytest's handlers
    are), so a model's log before the error line still shows there."""
    from tracker.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    root, handler = logging.getLogger(), logging.StreamHandler(err)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's refusal
                code = e.code
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """The command ended with exit code 2 and one line on stderr (no traceback, no model's log before it)."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("samtrack: error:"), \
        (r.returncode, r.stderr[-3000:])
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.fixture()
def busy_port():
    """A TCP port something listens on (another daemon, as far as samtrack can tell)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("flags", ["--metrics-port {}", "--results tcp://127.0.0.1:{} --no-metrics",
                                   "--commands tcp://127.0.0.1:{} --no-metrics"])
def test_a_busy_port_ends_serve_in_one_line_before_the_model_loads(busy_port, flags):
    """A second `samtrack serve` on a host (the default metrics port 9105 taken): a 42-line traceback and exit 1
    once the model had loaded; now one line naming the port and what to pass, exit 2, before anything loads."""
    r = _samtrack("serve", "--source", "test:", "--image-size", "64", *flags.format(busy_port).split())
    _one_line_error(r, str(busy_port), "in use", "--")


def test_an_ipc_endpoint_a_live_process_serves_is_busy_too(tmp_path):
    """ZeroMQ would take over the socket file of a running daemon's ipc:// endpoint: refused like a busy port."""
    path = tmp_path / "results.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        s.listen()
        r = _samtrack("serve", "--source", "test:", "--image-size", "64", "--no-metrics", "--results", f"ipc://{path}")
    _one_line_error(r, f"ipc://{path}", "in use")


def _argument_error(r: subprocess.CompletedProcess, option: str, *words: str) -> str:
    """argparse's refusal of one argument: exit code 2, its usage and one error line naming the option, no
    traceback."""
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert r.returncode == 2 and "Traceback" not in r.stderr and f"error: argument {option}" in last, \
        (r.returncode, r.stderr[-3000:])
    assert all(w in last for w in words), last
    return last


@pytest.mark.parametrize("command", ["track test: --frames 1 --point 1,1 --masks {tmp}/m.jsonl",
                                     "segment {tmp}/x.png --point 1,1", "demo", "serve --source test:",
                                     "export", "bench step --quick"])
@pytest.mark.parametrize("size", ["255", "500", "0"])
def test_an_image_size_the_model_cannot_take_is_refused_as_it_is_parsed(tmp_path, command, size):
    """track/segment --image-size 255 (or 500, 0) ended in a traceback and exit 1 once the model was built;
    demo --image-size 300 in exit 1 with the daemon's message second-hand. Now each command refuses it as it is
    parsed, saying which size to use."""
    (tmp_path / "x.png").write_bytes(b"")
    r = _samtrack_here(*command.format(tmp=tmp_path).split(), "--image-size", size)
    _argument_error(r, "--image-size", "not a multiple of 32", "use ")


def test_bench_help_lists_every_scenario():
    """`samtrack bench --help` was an error ("the following arguments are required"): it lists the scenarios."""
    from tracker.cli.bench import SCENARIOS

    r = _samtrack("bench", "--help", timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    listed = [line.split()[0] for line in r.stdout.split("scenarios:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]]
    assert listed == list(SCENARIOS)


def test_each_scenarios_quick_help_names_what_quick_changes():
    """--quick's help says what it does: every option --quick changes appears in it with its new value (e2e's
    said "0 frames, 2 warm-up" while it ran 30 s with 5 warm-up frames)."""
    import importlib

    import bench  # noqa: F401 - matplotlib before pyzmq and GStreamer (bench/__init__.py)
    from tracker.cli.bench import SCENARIOS

    quick_ones = 0
    for name, module in SCENARIOS.items():
        parser = importlib.import_module(module).parser()
        text = next((a.help for a in parser._actions if "--quick" in a.option_strings), None)
        if text is None:  # gpu, memory, engines: no --quick
            continue
        quick_ones += 1
        plain, quick = vars(parser.parse_args([])), vars(parser.parse_args(["--quick"]))
        changed = {k: v for k, v in quick.items() if k != "quick" and v != plain[k]}
        for dest, value in changed.items():
            shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            assert f"--{dest.replace('_', '-')} {shown}" in text, f"bench {name} --quick: {text!r} lacks {dest}"
    assert quick_ones >= 10


def test_vs_meta_says_what_it_is_doing(tmp_path):
    """`bench vs-meta` printed nothing for 4 minutes before its table: a line per phase, then per 10 frames. One
    thread: two spun against each other and the machine's other load (its 10 frames took 38 s instead of 4)."""
    r = _samtrack("bench", "vs-meta", "--quick", "--objects", "1", "--image-size", "64", "--precision", "fp32",
                  "--threads", "1", "--width", "160", "--height", "120", "--out", str(tmp_path / "v.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("[bench vs-meta")]
    assert [w for w in ("building", "engines", "loading", "alternately", "frame 10/10") if w not in " ".join(lines)] \
        == [], r.stderr[-3000:]


CLIENT_COMMANDS = ["objects", "stats", "remove --object 1", "reset", "prompt --object 1 --point 1,1",
                   "state export {tmp}/s.state", "watch"]


@pytest.fixture(scope="module")
def without_a_daemon(tmp_path_factory) -> dict[str, tuple[str, subprocess.CompletedProcess]]:
    """Each client command against an endpoint nothing listens on, all started at once: each waits its connect
    timeout (3 s, idle) for a daemon, and those waits overlap. Command -> (endpoint, what it did)."""
    from tracker.client.spawn import free_port

    tmp = tmp_path_factory.mktemp("no-daemon")
    running = {}
    for command in CLIENT_COMMANDS:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        option = "--results" if command == "watch" else "--commands"
        args = [sys.executable, "-m", "tracker.cli", *command.format(tmp=tmp).split(), option, endpoint]
        running[command] = (endpoint, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                       text=True, cwd=ROOT))
    done = {}
    try:
        for command, (endpoint, proc) in running.items():
            out, err = proc.communicate(timeout=120)
            done[command] = (endpoint, subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for _, proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return done


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_a_client_command_without_a_daemon_says_so_in_one_line(without_a_daemon, command):
    """Without a daemon, client commands waited their whole timeout (30 s for a prompt) and said "no reply"
    (watch: exit 1); now each says, in one line with exit 2, that no daemon runs at the endpoint."""
    endpoint, r = without_a_daemon[command]
    _one_line_error(r, f"is a daemon running at {endpoint}?")


def test_ctrl_c_during_track_says_the_outputs_hold_the_frames_tracked(tmp_path):
    """Ctrl-C (SIGINT) in `samtrack track`: it exited 130 without a word; now it says the outputs are partial and
    how many frames they hold, and they are complete files of that many frames."""
    import json
    import signal
    import time

    from pipelines.source import GstSource

    masks, video = tmp_path / "m.jsonl", tmp_path / "o.mkv"
    proc = subprocess.Popen([sys.executable, "-m", "tracker.cli", "track", "test:?width=160&height=120&fps=30",
                             "--frames", "100000", "--point", "80,60", "--masks", str(masks), "--out", str(video),
                             "--image-size", "64", "--threads", "1", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:  # bounded: until a few frames are written
            if masks.exists() and len(masks.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = masks.read_text().splitlines()
    assert proc.returncode == 130 and len(lines) >= 3, err[-3000:]
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert len(said) == 1 and f"after {len(lines)} frames" in said[0] and str(masks) in said[0], err[-3000:]
    assert [json.loads(line)["frame"] for line in lines] == list(range(len(lines)))
    with GstSource(str(video)) as src:
        assert sum(1 for _ in src) == len(lines)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 322x242 video file of 4 frames."""
    from tests.gst_helpers import CODECS, encode_test_file

    return encode_test_file(tmp_path_factory.mktemp("clip") / "c.mkv", CODECS["h264.mkv"], frames=4)


@pytest.mark.parametrize(("command", "words"), [
    ("segment {img} --out {tmp}/m.png", ["no prompt", "--point", "--box"]),
    ("segment {img} --box 10,10,500,50 --out {tmp}/m.png", ["outside the frame", "[0, 160]"]),
    ("segment {img} --box 50,10,10,50 --out {tmp}/m.png", ["x0 < x1"]),
    ("segment {img} --point 1,1 --out {tmp}/m.xyz", ["m.xyz", ".png"]),
    ("track {clip} --box 10,10,400,50 --masks {tmp}/m.jsonl", ["object 1 on frame 0", "outside the frame", "322"]),
    ("track test:?width=160&height=120 --frames 3 --point 170,20 --masks {tmp}/m.jsonl", ["outside", "[0, 160]"]),
    ("track test: --frames 3 --object 2 --box 50,10,10,50 --masks {tmp}/m.jsonl", ["object 2", "x0 < x1"]),
])
def test_prompts_and_outputs_are_checked_before_the_model_loads(tmp_path, clip, command, words):
    """A box outside the frame, x0 > x1, an image name cv2 cannot write, segment without a prompt: refused in one
    line before the model loads (they were found 7-10 s later, after the model and a progress bar)."""
    from PIL import Image

    img, not_weights = tmp_path / "i.png", tmp_path / "not-weights.pt"
    Image.new("RGB", (160, 120), (90, 40, 40)).save(img)
    not_weights.write_bytes(b"not a checkpoint")  # loading the model would fail first on this
    r = _samtrack_here(*command.format(img=img, tmp=tmp_path, clip=clip).split(), "--image-size", "64",
                       "--checkpoint", str(not_weights))
    _one_line_error(r, *words)


@pytest.mark.parametrize("command", ["track test: --frames 3 --point 1,1 --out {tmp}/o.gif",
                                     "watch --video {tmp}/o.xyz"])
def test_an_unknown_video_extension_is_refused_as_it_is_parsed(tmp_path, command):
    r = _samtrack_here(*command.format(tmp=tmp_path).split())
    _argument_error(r, "--", ".mp4", ".mkv")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser and every benchmark scenario's, by command."""
    import importlib

    import bench  # noqa: F401 - matplotlib before pyzmq and GStreamer (bench/__init__.py)
    from tracker.cli.bench import SCENARIOS
    from tracker.cli.main import build_parser

    found = {}

    def walk(parser: argparse.ArgumentParser, command: str) -> None:
        found[command] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{command} {name}")

    walk(build_parser(), "samtrack")
    for name, module in SCENARIOS.items():
        found[f"samtrack bench {name}"] = importlib.import_module(module).parser()
    return found


def test_every_option_of_every_command_says_what_it_is_for():
    """Options without help (serve --model/--image-size/--device/--results/--commands/--mask-encoding, prompt
    --object/--timeout, ...) showed only their name; a default now shows once, and "(default: None)" never."""
    parsers = _parsers()
    silent, twice = [], []
    for command, parser in parsers.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            if not action.help or action.help == argparse.SUPPRESS:
                silent.append(f"{command} {name}")
            elif formatter._expand_help(action).count("default") > 1 or "(default: None)" in \
                    formatter._expand_help(action):
                twice.append(f"{command} {name}: {formatter._expand_help(action)}")
    assert len(parsers) > 30 and silent == [] and twice == [], (silent, twice)


def test_the_small_things_a_new_user_reads(tmp_path):
    """weights list has a header; replay --backend lists its choices; doctor says how OpenVINO is used."""
    listing = _samtrack("weights", "list", "--cache-dir", str(tmp_path), timeout=120)
    assert listing.returncode == 0 and listing.stdout.splitlines()[0].split()[:3] == ["model", "checkpoint", "file"]
    replay = _samtrack("replay", str(tmp_path), "--backend", "nope", timeout=120)
    _argument_error(replay, "--backend", "auto", "torch", "openvino", "onnxruntime", "tensorrt")
    doctor = _samtrack("doctor", timeout=120)
    assert doctor.returncode == 0 and "\nopenvino: " in doctor.stdout, doctor.stdout


def test_track_and_segment_warn_of_random_weights_alike_and_sam2_keeps_its_notes(tmp_path):
    """Without a checkpoint every command says the same (they said it three ways); sam2's "Computing image
    embeddings" INFO lines no longer show in segment's output."""
    import os

    from PIL import Image

    img = tmp_path / "i.png"
    Image.new("RGB", (160, 120), (90, 40, 40)).save(img)
    env = {**os.environ, "SAMTRACK_CACHE_DIR": str(tmp_path / "no checkpoints"), "OMP_NUM_THREADS": "1"}

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tracker.cli", *args, "--image-size", "64", "--backend",
                                 "torch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)

    def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
        out, err = proc.communicate(timeout=300)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    # both at once, a torch thread each (OMP_NUM_THREADS: segment has no --threads), so they share two cores
    procs = [start("segment", str(img), "--point", "80,60", "--out", str(tmp_path / "m.png")),
             start("track", "test:?width=160&height=120", "--frames", "1", "--point", "80,60", "--masks",
                   str(tmp_path / "m.jsonl"), "--quiet")]
    try:
        seg, track = (finish(p) for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert seg.returncode == 0 and track.returncode == 0, seg.stderr[-2000:] + track.stderr[-2000:]

    def warning(r: subprocess.CompletedProcess) -> str:
        (line,) = [ln for ln in r.stderr.splitlines() if "RANDOM" in ln]
        return line.split(": ", 1)[1]  # after "WARNING <logger>:"

    assert warning(seg) == warning(track) and "samtrack weights download sam2.1_hiera_t" in warning(seg)
    assert "Computing image embeddings" not in seg.stderr + seg.stdout, seg.stderr[-2000:]


def test_auto_precision_does_not_read_as_exact(caplog):
    """"precision auto -> fp32 ...; precision=fp32 gives Meta's exact arithmetic" read as exact while OpenVINO ran
    the encoder: auto's line now says it is within the tolerance, and what exactness needs."""
    import logging

    import torch

    from tracker.core.precision import resolve_precision

    with caplog.at_level(logging.INFO, logger="tracker.core.precision"):
        assert resolve_precision("auto", torch.device("cpu"), flags=set()) == "fp32"  # a CPU without bf16
    (line,) = [r.getMessage() for r in caplog.records if "precision auto" in r.getMessage()]
    assert "-> fp32" in line and "tolerance" in line and "needs precision fp32 named" in line, line
