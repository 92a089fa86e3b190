"""OpenVINO, the CPU's compiled engine and auto's choice there: the tolerance contract of docs/engines.md against
the exact fp32 path, its artefact cache (hit, miss, other weights, a corrupted file rebuilt), auto's choice and its
fallback without openvino, and the daemon and `samtrack track` on the default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from engines.openvino_backend import OpenVINOEngines, cpu_precision, import_openvino
from tests.conftest import make_model
from tests.test_fast_path import _check_contract
from tracker import Tracker
from tracker.build import auto_openvino_parts, resolve_backend

SIZE = 64  # the contract is size-independent; small keeps the conversions and the 100 frames quick


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def model():
    return make_model(image_size=SIZE)


def test_auto_is_openvino_on_a_cpu_unless_fp32_is_asked_for(model):
    assert resolve_backend("auto", model) == "openvino"
    assert resolve_backend("auto", model, precision="fp32") == "torch"  # Meta's exact arithmetic
    assert resolve_backend("auto", model, precision="bf16") == "openvino"
    assert resolve_backend("torch", model) == "torch" and resolve_backend("onnxruntime", model) == "onnxruntime"


def test_without_openvino_auto_falls_back_to_torch_and_says_so_once():
    """openvino hidden from the import system (as on a machine without it): auto gives torch, with one warning."""
    code = """
import builtins, logging, sys
real = builtins.__import__
def hide(name, *a, **k):
    if name == "openvino" or name.startswith("openvino."):
        raise ImportError("No module named 'openvino'")
    return real(name, *a, **k)
builtins.__import__ = hide
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from tests.conftest import make_model
from tracker import Tracker
m = make_model(image_size=64)
for _ in range(3):
    t = Tracker.from_sam2(m)
print("BACKEND", t.backend)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "BACKEND torch" in r.stdout
    said = [ln for ln in r.stderr.splitlines() if "backend auto: the openvino package is not installed" in ln]
    assert len(said) == 1, r.stderr[-3000:]


@pytest.mark.slow  # conversions, then 100 frames twice
@pytest.mark.parametrize("backend", ["auto", "openvino"])
def test_openvino_meets_the_tolerance_contract_over_100_frames(model, cache, backend):
    """The default (auto's parts for this CPU) and the named backend (every part compiled) on this CPU against Meta's
    exact arithmetic: mean IoU >= 0.98, presence and boxes agreeing on >= 98 % of (frame, object) pairs, with a
    correction and an object added on a past frame."""
    exact = Tracker.from_sam2(model, precision="fp32")
    fast = Tracker.from_sam2(model, engine_cache=cache, backend=backend)
    assert fast.backend == "openvino" and exact.backend == "torch"
    compiled = {k for k in ("memory_attention", "heads", "memory_encoder")
                if getattr(fast.engines, k) != getattr(exact.engines, k)}  # bound methods: equal when the same
    per_object = {"memory_attention", "heads", "memory_encoder"}
    assert compiled == (per_object & set(auto_openvino_parts()) if backend == "auto" else per_object)
    _check_contract(exact, fast)


@pytest.mark.slow  # conversions
def test_the_cache_hits_misses_on_other_weights_and_rebuilds_a_corrupted_artefact(model, tmp_path, caplog):
    engines = OpenVINOEngines.for_model(model, tmp_path, parts=("encoder",))  # a miss: converted
    (xml,) = tmp_path.glob("ov-encoder-*.xml")
    stamp = xml.stat().st_mtime_ns
    OpenVINOEngines.for_model(model, tmp_path, parts=("encoder",))
    assert xml.stat().st_mtime_ns == stamp and len(list(tmp_path.glob("ov-encoder-*.xml"))) == 1  # a hit
    OpenVINOEngines.for_model(make_model(image_size=SIZE, seed=1), tmp_path, parts=("encoder",))
    assert len(list(tmp_path.glob("ov-encoder-*.xml"))) == 2  # other weights: an artefact of their own
    weights = xml.with_suffix(".bin")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights, which the .xml's manifest verifies too
    weights.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="engines.cache"):
        rebuilt = OpenVINOEngines.for_model(model, tmp_path, parts=("encoder",))
    assert f"cached {xml.name} is corrupt or stale: rebuilding it" in caplog.text
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        a, b = engines.encoder(x)["backbone_fpn"], rebuilt.encoder(x)["backbone_fpn"]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))  # the same graph again: the same numbers


@pytest.mark.slow  # a conversion and three compilations
def test_a_compiled_blob_changed_in_place_is_compiled_again(model, tmp_path, caplog):
    """OpenVINO's compiled blob (which it maps as it is) changed in place: verified by its digest before it is
    loaded, deleted and compiled again, so the encoder gives the numbers it gave (the changed blob once loaded and
    the third FPN level came out NaN)."""
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        before = OpenVINOEngines.for_model(model, tmp_path, parts=("encoder",)).encoder(x)["backbone_fpn"]
        OpenVINOEngines.for_model(model, tmp_path, parts=("encoder",))  # loaded from its blob
        (blob,) = (tmp_path / "openvino-compiled").rglob("*.blob")
        blob.chmod(0o600)  # OpenVINO writes it read-only
        with open(blob, "r+b") as f:  # 4 KiB of its weights overwritten in place (its header, checked, intact)
            f.seek(blob.stat().st_size // 2)
            f.write(b"\xff" * 4096)
        changed = blob.read_bytes()
        with caplog.at_level("WARNING", logger="engines.openvino_backend"):
            after = OpenVINOEngines.for_model(model, tmp_path, parts=("encoder",)).encoder(x)["backbone_fpn"]
    assert all(torch.equal(p, q) for p, q in zip(before, after, strict=True))
    assert "did not match its digest: compiling it again" in caplog.text
    (blob,) = (tmp_path / "openvino-compiled").rglob("*.blob")
    assert blob.read_bytes() != changed  # compiled again into the cache


def test_the_precision_follows_the_cpu():
    caps = import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert cpu_precision() == ("bf16" if "BF16" in caps else "f32")


@pytest.mark.slow  # a daemon on the default engines, and `samtrack track`
def test_the_daemon_and_track_run_on_the_default(tmp_path):
    from tests.daemon_helpers import start_daemon
    from tracker.client import Client, Result, Subscriber

    d = start_daemon(backend=None)
    try:
        with Client(d.commands, timeout=60) as c, Subscriber(d.results, "test") as sub:
            assert c.ping()["backend"] == "openvino"
            prompted = c.add_box(1, [20, 20, 90, 80])["frame"]
            got = []
            for _ in range(100):  # bounded: results published before the prompt are skipped
                r = sub.recv(30.0)
                assert r is not None
                if isinstance(r, Result) and r.frame > prompted:
                    got.append(r)
                if len(got) == 3:
                    break
            assert len(got) == 3 and all(1 in r.masks for r in got)
    finally:
        assert d.stop() == 0
    out = tmp_path / "m.jsonl"
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "track", "test:?width=160&height=120", "--frames", "5",
                        "--box", "20,20,90,80", "--masks", str(out), "--image-size", "64", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(openvino, fp32)" in r.stdout or "(openvino, bf16)" in r.stdout, r.stdout
    assert len(out.read_text().splitlines()) == 5 and np.all([json.loads(x)["objects"] for x in
                                                             out.read_text().splitlines()])


_COUNT_SENDS = """
import atexit, multiprocessing, socket, torch
forks, connections = [], []
multiprocessing.Process.start = lambda self: forks.append(self)  # how the analytics sender sends


def connect(sock, address):
    connections.append(address)
    raise OSError("no network in this test")


socket.socket.connect = connect
atexit.register(lambda: print(len(forks), len(connections)))  # after every worker thread has been joined
from engines.openvino_backend import convert, openvino_available
assert openvino_available() is None
from openvino.tools.ovc import telemetry_utils
assert telemetry_utils.tm.__name__.endswith("telemetry_stub"), telemetry_utils.tm.__name__
convert(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), None)
convert(torch.nn.Linear(4, 3), (torch.zeros(2, 4),), [[-1, 4]])
"""
# What turns OpenVINO's telemetry off without samtrack (a CI job, an opt-out file in $HOME): removed, so that the
# test shows what samtrack does on a user's machine.
_TELEMETRY_OFF = ("CI", "TF_BUILD", "JENKINS_URL")


def test_importing_and_converting_send_nothing_and_fork_nothing(tmp_path):
    """OpenVINO reports its import and each conversion to an analytics service unless opted out, from a process it
    forks out of a thread while the conversion runs (that fork aborted the test process in CI): samtrack sends
    nothing. A fresh interpreter, where nothing imported openvino before samtrack."""
    env = {k: v for k, v in os.environ.items() if k not in _TELEMETRY_OFF} | {"HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", _COUNT_SENDS], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    forks, connections = (int(x) for x in r.stdout.split())
    assert forks == 0 and connections == 0, r.stdout


_GSTREAMER_THEN_OPENVINO = """
import sys, torch
import pipelines.gst
assert pipelines.gst.HAVE_GST
from engines.openvino_backend import OpenVINOEngines
from tests.conftest import make_model
engines = OpenVINOEngines.for_model(make_model(image_size=128), sys.argv[1], parts=("encoder",))
print(len(engines.encoder(torch.rand(1, 3, 128, 128))["backbone_fpn"]))
"""


def test_openvino_converts_and_runs_in_a_process_that_loaded_gstreamer(tmp_path):
    """A daemon holds GStreamer and OpenVINO in one process. GStreamer's libunwind, loaded globally by GObject
    introspection, took over the unwinding of C++ exceptions OpenVINO throws and catches inside its converter:
    the conversion aborted the process (and the CI run). A fresh interpreter: GStreamer first, as in a daemon."""
    r = subprocess.run([sys.executable, "-c", _GSTREAMER_THEN_OPENVINO, str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.split()[-1] == "3"  # three feature levels


class _MatmulChain(torch.nn.Module):
    """A graph of seconds on one thread: long enough that a signal arrives while it runs."""

    def __init__(self, n: int, size: int):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weights = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(size, size, generator=g) / size**0.5)
                                              for _ in range(n))

    def forward(self, x):
        for w in self.weights:
            x = torch.tanh(x @ w)
        return x


def test_a_signal_interrupts_a_running_inference_and_the_request_runs_again():
    """The daemon's SIGTERM handler raises inside a step; with OpenVINO running the encoder the main thread sits
    in a call of seconds, and the handler must run before the inference has finished (not after the call
    returned), the exception must come out of the call, and the request must be usable again."""
    import signal
    import threading

    from engines.openvino_backend import _Compiled, convert

    ov = import_openvino()
    size = 1024
    graph, x = _MatmulChain(64, size).eval(), torch.randn(size, size)
    config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}  # f32: AMX's bf16 would take 0.2 s
    compiled = _Compiled(ov.Core().compile_model(convert(graph, (x,), None), "CPU", config))
    (expected,) = compiled(x)
    output = compiled.request.get_tensor(compiled.outputs[0]).data
    output[:] = 0  # what the request writes last: still zero while the inference runs
    finished_when_handled: list[bool] = []

    class Stop(BaseException):
        pass

    def handler(_signum, _frame):
        finished_when_handled.append(bool(np.array_equal(output, expected.numpy())))
        raise Stop

    # SIGUSR1 from a timer thread (SIGALRM is pytest-timeout's): 64 f32 matmuls of 1024^3 on one thread take
    # a second or more, the signal comes after 50 ms
    old = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.05, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(Stop):
            compiled(x)
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, old)
    assert finished_when_handled == [False]
    assert not np.array_equal(output, expected.numpy())  # cancelled: the last layer never ran
    (out,) = compiled(x)
    assert torch.equal(out, expected)


def test_the_encoder_quantized_to_int8_runs_in_the_trackers_place_near_f32(model, cache, tmp_path):
    """bench int8's pieces: NNCF's int8 copy of the encoder IR has quantize nodes on its linear layers, compiles
    as the backend's encoder does, and its features stay within a few percent of OpenVINO f32's."""
    from bench.int8 import calibration_frames, quantize
    from engines.openvino_backend import compile_encoder, encoder_ir
    from tracker.core.preprocess import Preprocessor

    ir = encoder_ir(model, cache)
    pre = Preprocessor(SIZE, torch.device("cpu"))
    frames = calibration_frames(160, 120)
    assert len(frames) >= 14 and all(f.dtype == np.uint8 and f.shape[2] == 3 for f in frames)
    q = quantize(ir, [pre(f).numpy() for f in frames], tmp_path / "int8.xml")
    kinds = [op.get_type_name() for op in import_openvino().Core().read_model(str(q)).get_ops()]
    assert kinds.count("FakeQuantize") >= 20, sorted(set(kinds))
    x = pre(frames[0])
    a = compile_encoder(model, q, 2, "f32")(x)["backbone_fpn"]
    b = compile_encoder(model, ir, 2, "f32")(x)["backbone_fpn"]
    assert [t.shape for t in a] == [t.shape for t in b]
    errors = [float((p - r).norm() / r.norm()) for p, r in zip(a, b, strict=True)]
    assert all(0 < e < 0.1 for e in errors), errors  # quantized (not equal), yet close
