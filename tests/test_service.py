"""Running as a service: config files, systemd notify + watchdog, metrics, CURVE, recovery."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon_helpers import curve_config, scrape_metrics, start_daemon
from tests.notify import NotifySocket
from tests.rtsp_server import RtspTestServer
from tracker.client import Client
from tracker.client.spawn import free_port
from tracker.daemon.config import ConfigError, example_toml, load_config
from tracker.protocol.curve import CurveClient, generate_keys, is_loopback

ROOT = Path(__file__).resolve().parents[1]

# ---- configuration ----------------------------------------------------------------------------------


def test_example_config_is_the_shipped_file_and_loads():
    assert (ROOT / "systemd" / "samtrack.toml").read_text() == example_toml()
    cfg = load_config(ROOT / "systemd" / "samtrack.toml")
    assert cfg.endpoints.results == "tcp://127.0.0.1:5555" and cfg.model.image_size == 512
    assert "# Recent frames a prompt may name" in example_toml()


@pytest.mark.parametrize("text, words", [
    ("[stream]\nnmae = 'x'\n", ["stream.nmae: unknown key; allowed here: name, source"]),
    ("[model]\nimage_size = 'big'\n", ["model.image_size", "valid integer", "'big'"]),
    ("[model]\nimage_size = 500\n", ["model.image_size", "multiple of 32"]),
    ("[endpoints]\nresults = 'http://0.0.0.0:80'\n", ["endpoints.results: must start with tcp://"]),
    ("[endpoints]\ncommands = 'tcp://127.0.0.1:99999'\n", ["PORT in 1..65535"]),
    ("[model]\ncheckpoint = '/no/such/file.pt'\n", ["model.checkpoint: checkpoint file not found: /no/such/file.pt"]),
    ("[output]\nmask_encoding = 'jpeg'\n", ["output.mask_encoding", "'rle', 'bits', 'png' or 'none'"]),
    ("[auth]\ncurve = true\n", ["auth: curve needs server_secret_key"]),
    ("[cameras]\nx = 1\n", ["cameras: unknown key; allowed here: stream, streams, model"]),
    ("[stream]\nname = 'a'\n[[streams]]\nname = 'b'\n", ["[stream] (one camera) or [[streams]] (several), not both"]),
    ("[[streams]]\nname = 'a'\n[[streams]]\nname = 'a'\n", ["stream names must differ"]),
    ("[[streams]]\nname = 'a b'\n", ["streams.0.name", "should match pattern"]),
    ("stream = [\n", ["not valid TOML"]),
])
def test_config_mistakes_are_explained(tmp_path, text, words):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_a_recording_directory_that_is_a_file_is_refused_at_load(tmp_path):
    """Before any model loads (it was a FileExistsError when the recorder started)."""
    p = tmp_path / "c.toml"
    p.write_text(f"[record]\ndirectory = '{p}'\n")
    with pytest.raises(ConfigError, match=f"record.directory: '{p}' is a file, not a directory: give a directory"):
        load_config(p)


def test_flags_override_the_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[model]\nimage_size = 256\n[stream]\nname = 'cam1'\n")
    cfg = load_config(p, {"model.image_size": 128})
    assert cfg.model.image_size == 128 and cfg.stream.name == "cam1"


@pytest.mark.parametrize("command", [["serve"], ["broker", "--daemon", "tcp://127.0.0.1:5556"]])
def test_the_log_level_flag_takes_any_case(command):
    from tracker.cli.main import build_parser

    assert build_parser().parse_args([*command, "--log-level", "debug"]).log_level == "DEBUG"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--log-level", "loud"])


def test_the_config_files_log_level_takes_any_case(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[logging]\nlevel = 'warning'\n")
    assert load_config(p, {}).logging.level == "WARNING"
    p.write_text("[logging]\nlevel = 'loud'\n")
    with pytest.raises(ConfigError):
        load_config(p, {})


def test_config_cli(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[stream]\nsource = 3\n")
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "config", "check", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "stream.source" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "config", "check", str(ROOT / "systemd/samtrack.toml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout


def test_missing_checkpoint_fails_the_start(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "serve", "--checkpoint", str(tmp_path / "x.pt")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "checkpoint file not found" in r.stderr


def test_source_that_cannot_start_fails_the_start(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "serve", "--source", str(tmp_path / "none.mp4"),
                        "--image-size", "64", "--no-metrics", "--results", f"tcp://127.0.0.1:{free_port()}",
                        "--commands", f"tcp://127.0.0.1:{free_port()}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "file not found" in r.stderr


# ---- systemd units ------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["samtrack.service", "samtrack@.service"])
def test_units(unit, tmp_path):
    text = (ROOT / "systemd" / unit).read_text()
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read_string(text)
    svc = cp["Service"]
    assert svc["Type"] == "notify" and svc["Restart"] == "on-failure" and int(svc["WatchdogSec"]) > 0
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict" and svc["PrivateTmp"] == "yes"
    assert "video" in svc["SupplementaryGroups"] and "StartLimitBurst" in cp["Unit"]
    assert ("%i.toml" in svc["ExecStart"]) == (unit == "samtrack@.service")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: unit files were parse-checked only")
    exe = Path(sys.executable).parent / "samtrack"
    (tmp_path / unit).write_text(text.replace("/opt/samtrack/.venv/bin/samtrack", str(exe)))
    target = tmp_path / (unit.replace("@", "@cam1") if "@" in unit else unit)
    r = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in r.stderr.splitlines() if str(tmp_path) in ln or unit.split(".")[0] in ln]
    assert r.returncode == 0 and not problems, r.stderr


# ---- notify, watchdog, metrics and recovery, on one daemon whose RTSP source is killed and restarted ---


@pytest.mark.slow
def test_notify_watchdog_metrics_and_rtsp_recovery(tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    server = RtspTestServer(free_port()).start()
    cfg = tmp_path / "svc.toml"
    cfg.write_text("[service]\nwatchdog_stall_s = 1.0\nstatus_every_s = 0.5\n"
                   "[stream]\nstall_timeout_s = 1.5\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n")
    d = start_daemon("--config", str(cfg), source=f"{server.url}#latency=0",
                     env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"})
    try:
        with Client(d.commands, timeout=30) as c:
            c.add_points(1, [[80, 60]], [1])
            assert notify.wait_for("READY=1", 30)
            time.sleep(2.0)
            t_flow = time.monotonic()
            time.sleep(2.0)
            assert len(notify.between(t_flow, time.monotonic(), "WATCHDOG=1")) >= 3  # every 0.2 s while frames flow
            status = notify.between(0, time.monotonic(), "STATUS=")
            assert status and "fps" in status[-1] and "1 objects" in status[-1]

            port = c.ping()["metrics_port"]
            m = scrape_metrics(port)
            frames = m['samtrack_frames_total{stream="test"}']
            enc = m['samtrack_stage_seconds_count{stage="encoder",stream="test"}']
            assert frames > 0 and abs(enc - frames) <= 1
            assert m['samtrack_end_to_end_seconds_count{stream="test"}'] >= frames - 1
            assert m['samtrack_objects{stream="test"}'] == 1
            assert m['samtrack_prompts_total{stream="test"}'] == 1
            assert abs(c.stats()["frames"] - frames) <= 20

            server.kill()  # the camera goes away: frames stop, the watchdog stops, commands still work
            time.sleep(2.5)
            t_stall = time.monotonic()
            time.sleep(2.0)
            assert notify.between(t_stall, time.monotonic(), "WATCHDOG=1") == []
            assert c.ping()["source"]["connected"] is False
            f_stalled = c.stats()["frames"]

            server.start()  # it comes back: frames resume, reconnects counted
            deadline = time.monotonic() + 40
            while c.stats()["frames"] <= f_stalled + 5 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert c.stats()["frames"] > f_stalled + 5, "frames did not resume after the RTSP server restarted"
            assert c.ping()["source"]["reconnects"] >= 1
            time.sleep(1.0)
            assert scrape_metrics(port)['samtrack_source_reconnects_total{stream="test"}'] >= 1
            t_back = time.monotonic()
            time.sleep(1.5)
            assert notify.between(t_back, time.monotonic(), "WATCHDOG=1")
        assert d.stop() == 0
        assert notify.wait_for("STOPPING=1", 5)
    finally:
        d.stop()
        server.kill()
        notify.close()


# ---- CURVE -------------------------------------------------------------------------------------------------


def test_curve_refuses_unauthenticated_clients(tmp_path):
    cfg, alice = curve_config(tmp_path, "alice")
    server_pub = alice.server_public_key_file
    _, mallory_secret = generate_keys(tmp_path / "keys", "mallory")  # not authorised
    assert ((tmp_path / "keys" / "server.key_secret").stat().st_mode & 0o777) == 0o600
    d = start_daemon("--config", str(cfg), curve=alice)
    try:
        with Client(d.commands, timeout=10, curve=alice) as c:
            assert c.ping()["pong"] is True
        with Client(d.commands, timeout=2) as plain:
            with pytest.raises(TimeoutError):
                plain.ping()
        with Client(d.commands, timeout=2, curve=CurveClient(str(mallory_secret), server_pub)) as m:
            with pytest.raises(TimeoutError):
                m.ping()
        _cli_clients_reach_a_curve_daemon(d, alice)
    finally:
        assert d.stop() == 0


def _samtrack(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _cli_clients_reach_a_curve_daemon(d, alice: CurveClient) -> None:
    """samtrack prompt/watch/objects/stats with --client-key/--server-key, and a clear error for half a pair."""
    keys = ["--client-key", alice.secret_key_file, "--server-key", alice.server_public_key_file]
    r = _samtrack("prompt", "--commands", d.commands, "--object", "1", "--point", "80,60", *keys)
    assert r.returncode == 0 and json.loads(r.stdout)["object"]["id"] == 1, r.stderr[-2000:]
    r = _samtrack("objects", "--commands", d.commands, *keys)
    assert r.returncode == 0 and [o["id"] for o in json.loads(r.stdout)["objects"]] == [1], r.stderr[-2000:]
    r = _samtrack("stats", "--commands", d.commands, *keys)
    assert r.returncode == 0 and json.loads(r.stdout)["prompts"] == 1, r.stderr[-2000:]
    r = _samtrack("watch", "--results", d.results, "--frames", "2", *keys)
    assert r.returncode == 0 and r.stdout.count("frame ") >= 2 and "#1 " in r.stdout, r.stderr[-2000:]
    r = _samtrack("stats", "--commands", d.commands, "--timeout", "2")  # no keys: the daemon never answers
    assert r.returncode == 2 and "no reply to stats" in r.stderr
    r = _samtrack("stats", "--commands", d.commands, "--client-key", alice.secret_key_file)
    assert r.returncode == 2 and "--client-key and --server-key go together" in r.stderr


def test_loopback_detection():
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://[::1]:5555") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://10.1.2.3:5555")
    assert not is_loopback("tcp://camera-host:5555")
