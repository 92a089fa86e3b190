"""`samtrack broker` with two real daemons: one subscriber sees both streams, each command reaches the daemon
of its stream, a killed daemon's stream answers stream_unavailable while the other works, and everything
resumes when it is restarted. Real processes and sockets, loopback only."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.daemon_helpers import served_streams, start_daemon
from tracker.client import Client, RemoteError, Result, Subscriber
from tracker.client.spawn import free_port, stop_daemon

pytestmark = pytest.mark.slow  # three processes, one restarted

# Each daemon's camera: a few results a second is all the checks read; more frames would only take CPU time from
# the processes starting beside them (the broker, a restarted daemon).
A = "test:?pattern=ball&width=160&height=120&fps=5"
B = "test:?pattern=smpte&width=160&height=120&fps=5"


def _streams_seen(sub: Subscriber, want: set[str], since_us: int = 0, timeout: float = 60.0) -> set[str]:
    """The streams whose results published after since_us (wall clock) arrive, until all of `want` did."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while seen != want and time.monotonic() < deadline:
        msg = sub.recv(2.0)
        if isinstance(msg, Result) and msg.header["publish_unix_us"] >= since_us:
            seen.add(msg.header["stream"])
    return seen


def _until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_broker_joins_two_daemons_and_survives_one_dying():
    a = start_daemon(source=A, stream="a")
    b = start_daemon(source=B, stream="b")
    results, commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    broker = subprocess.Popen([sys.executable, "-m", "tracker.cli", "broker", "--results", results, "--commands",
                               commands, "--daemon", a.results, a.commands, "--daemon", b.results, b.commands],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(commands, timeout=30) as c, Subscriber(results) as sub:
            _until(lambda: served_streams(c) == ["a", "b"])
            assert sorted(c.ping()["per_stream"]) == ["a", "b"]
            assert _streams_seen(sub, {"a", "b"}) == {"a", "b"}  # one subscriber, both daemons' results
            with pytest.raises(RemoteError) as e:
                c.add_points(1, [[80, 60]], [1])
            assert e.value.code == "stream_required"
            with Client(commands, 30, stream="a") as ca, Client(commands, 30, stream="b") as cb:
                assert ca.add_points(1, [[80, 60]], [1])["object"]["id"] == 1
                assert cb.add_box(2, [10, 10, 90, 80])["object"]["id"] == 2
                with Client(a.commands, 30) as da, Client(b.commands, 30) as db:  # each reached its own daemon
                    assert [o["id"] for o in da.list_objects()["objects"]] == [1]
                    assert [o["id"] for o in db.list_objects()["objects"]] == [2]
                with pytest.raises(RemoteError) as e:
                    c.request("list_objects", {"stream": "zz"})
                assert e.value.code == "unknown_stream"

                stop_daemon_hard(a)
                _until(lambda: _code(ca) == "stream_unavailable", timeout=30)
                assert _code(ca) == "stream_unavailable"
                assert [o["id"] for o in cb.list_objects()["objects"]] == [2]  # the other daemon is unaffected
                stats = c.stats()
                assert list(stats["per_stream"]) == ["b"] and stats["total"]["objects"] == 1

                restarted_us = time.time_ns() // 1000
                again = start_daemon(source=A, stream="a", endpoints=(a.results, a.commands))
                try:
                    _until(lambda: _code(ca) is None)
                    assert ca.list_objects()["objects"] == []  # a new daemon: its objects start afresh
                    # results of the new daemon come through the broker (not ones queued before the kill)
                    assert _streams_seen(sub, {"a", "b"}, since_us=restarted_us) == {"a", "b"}
                finally:
                    assert again.stop() == 0
    finally:
        assert stop_daemon(broker) == 0
        a.stop()
        b.stop()


def stop_daemon_hard(d) -> None:
    d.proc.kill()
    d.proc.wait(timeout=10)


def _code(client: Client) -> str | None:
    """The error code of a list_objects through the broker, None when it succeeds."""
    try:
        client.list_objects()
    except RemoteError as e:
        return e.code
    return None


def test_curve_on_both_sides_of_the_broker(tmp_path):
    """Clients authenticate to the broker, the broker to a CurveZMQ daemon; a client without keys gets nothing."""
    from tests.daemon_helpers import curve_config
    from tracker.protocol.curve import CurveClient, authorize_client, generate_keys

    cfg, broker_keys = curve_config(tmp_path / "daemon", "broker")
    d = start_daemon("--config", str(cfg), source=A, curve=broker_keys)
    front_pub, front_secret = generate_keys(tmp_path / "front", "broker")
    alice_pub, alice_secret = generate_keys(tmp_path / "alice", "alice")
    authorize_client(alice_pub, tmp_path / "clients")
    results, commands = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    broker = subprocess.Popen([sys.executable, "-m", "tracker.cli", "broker", "--results", results, "--commands",
                               commands, "--daemon", d.results, d.commands,
                               "--server-secret-key", str(front_secret), "--authorized-clients",
                               str(tmp_path / "clients"), "--client-key", broker_keys.secret_key_file,
                               "--server-key", broker_keys.server_public_key_file],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    alice = CurveClient(str(alice_secret), str(front_pub))
    try:
        with Client(commands, timeout=5, curve=alice) as c, Subscriber(results, curve=alice) as sub:
            _until(lambda: served_streams(c) == ["test"])
            assert served_streams(c) == ["test"]
            assert _streams_seen(sub, {"test"}) == {"test"}
        with Client(commands, timeout=2) as stranger, pytest.raises(TimeoutError):
            stranger.ping()
    finally:
        assert stop_daemon(broker) == 0
        d.stop()

