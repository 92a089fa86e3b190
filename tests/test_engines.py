"""Encoder backends against the PyTorch path: features, full tracking, the artefact cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.base import Engines
from engines.cache import ArtefactCache, ArtefactKey
from engines.factory import make_encoder, make_memory_attention
from engines.memory_graph import MemoryAttentionGraph
from engines.onnxruntime_backend import OrtEncoder, OrtMemoryAttention, export_cached, onnx_key
from engines.tensorrt_backend import tensorrt_available
from pipelines.synthetic import box_of_first_shape, moving_shapes_frame
from tests.conftest import make_model
from tracker import Tracker
from tracker.core.precision import resolve_precision, use_ieee_fp32

SIZE = 128  # tolerance contract is size-independent; small keeps CI quick
FEATURE_ATOL = 1e-4  # fp32 compiled backends vs torch, max abs over every feature level
MEAN_IOU = 0.999  # over 100 tracked frames with objects present
LEVELS = 3  # FPN levels an encoder returns (backbone_fpn, vision_pos_enc): every one is compared


@pytest.fixture(scope="module")
def model():
    return make_model(image_size=SIZE)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


def _image(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, SIZE, SIZE, generator=g)


def test_torch_backend_is_metas_forward_image(model):
    x = _image()
    with torch.inference_mode():
        ref = model.forward_image(x)
        out = make_encoder("torch", model)(x)
    assert len(ref["backbone_fpn"]) == LEVELS
    assert all(torch.equal(a, b) for a, b in zip(out["backbone_fpn"], ref["backbone_fpn"], strict=True))


@pytest.mark.parametrize("size", [64, 128])
def test_position_encodings_are_metas_without_running_the_encoder(size):
    """The compiled encoders' constant vision_pos_enc, from the neck alone, equals what Meta's forward returns."""
    from engines.base import position_encodings

    m = make_model(image_size=size)
    with torch.inference_mode():
        ref = m.forward_image(torch.zeros(1, 3, size, size))["vision_pos_enc"]
    ours = position_encodings(m, size)
    assert len(ours) == len(ref) and all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))


def test_torch_bf16_backend_stays_close(model):
    x = _image(1)
    with torch.inference_mode():
        ref = model.forward_image(x)["backbone_fpn"]
        out = make_encoder("torch", model, precision="bf16")(x)["backbone_fpn"]
    assert len(ref) == LEVELS
    for a, b in zip(out, ref, strict=True):
        assert a.dtype == torch.float32
        rel = (a - b).abs().max() / b.abs().max()
        # bf16 has 8 bits of mantissa: about 1e-2 here (fp32 gives 0: an encoder ignoring bf16 fails)
        assert 1e-4 < rel < 0.1, f"bf16 relative error {rel:.2e}"


def test_onnxruntime_features_within_tolerance(model, cache_dir):
    enc = make_encoder("onnxruntime", model, cache_dir=cache_dir)
    for seed in range(3):
        x = _image(seed)
        with torch.inference_mode():
            ref = model.forward_image(x)
        out = enc(x)
        assert len(ref["backbone_fpn"]) == len(ref["vision_pos_enc"]) == LEVELS
        for a, b in zip(out["backbone_fpn"], ref["backbone_fpn"], strict=True):
            assert a.shape == b.shape and (a - b).abs().max().item() < FEATURE_ATOL
        for a, b in zip(out["vision_pos_enc"], ref["vision_pos_enc"], strict=True):
            assert torch.equal(a, b)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def _memory_inputs(n_frames: int, n_ptr: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hw = (SIZE // 16) ** 2
    return tuple(torch.randn(n, 1, c, generator=g) for n, c in ((hw, 256), (hw, 256), (n_frames * hw, 64),
                                                                 (n_frames * hw, 64), (n_ptr, 64), (n_ptr, 64)))


def test_memory_attention_real_rope_graph_and_onnxruntime(model, cache_dir):
    """The exportable graph (cos/sin RoPE, keys projected in two parts) equals Meta's module up to float
    rounding in torch; its ONNX file, one for every memory length, stays within tolerance in ONNX Runtime."""
    graph = MemoryAttentionGraph(model, SIZE).eval()
    ort_attn = make_memory_attention("onnxruntime", model, cache_dir=cache_dir)
    assert isinstance(ort_attn, OrtMemoryAttention)
    for seed, (n_frames, n_ptr) in enumerate([(1, 4), (7, 64), (3, 17), (9, 1)]):
        curr, curr_pos, mem, mem_pos, ptr, ptr_pos = _memory_inputs(n_frames, n_ptr, seed)
        memory, memory_pos = torch.cat([mem, ptr]), torch.cat([mem_pos, ptr_pos])
        with torch.inference_mode():
            ref = model.memory_attention(curr=[curr], curr_pos=[curr_pos], memory=memory, memory_pos=memory_pos,
                                         num_obj_ptr_tokens=n_ptr)
            assert (graph(curr, curr_pos, mem, mem_pos, ptr, ptr_pos) - ref).abs().max().item() < 1e-5
        out = ort_attn([curr], [curr_pos], memory, memory_pos, n_ptr)
        assert out.shape == ref.shape and (out - ref).abs().max().item() < FEATURE_ATOL
    assert len(list(cache_dir.glob("onnx-memory-*.onnx"))) == 1


@pytest.mark.slow
def test_onnxruntime_tracking_100_frames_matches_torch(model, cache_dir):
    h, w = 96, 120
    ref = Tracker.from_sam2(model, precision="fp32")
    memory_attention = make_memory_attention("onnxruntime", model, cache_dir=cache_dir)
    runs = []
    session_run = memory_attention.session.run
    memory_attention.session.run = lambda *a: runs.append(1) or session_run(*a)  # count: it must be used
    ort_tracker = Tracker(model, ref.options, Engines.of(model, "onnxruntime", encoder=make_encoder(
        "onnxruntime", model, cache_dir=cache_dir), memory_attention=memory_attention))
    ious, present = [], 0
    for i in range(100):
        f = moving_shapes_frame(i, h, w)
        ra, rb = ref.step(f), ort_tracker.step(f)
        if i == 0:
            ra, rb = ref.add_box(1, box_of_first_shape(0, h, w)), ort_tracker.add_box(1, box_of_first_shape(0, h, w))
        present += ra.objects[1].present
        ious.append(_iou(ra.objects[1].mask, rb.objects[1].mask))
    assert present == 100 and len(runs) >= 99  # every tracked frame after the prompt
    assert np.mean(ious) >= MEAN_IOU, f"mean IoU {np.mean(ious):.5f}, min {np.min(ious):.5f}"


@pytest.mark.slow
def test_cache_hit_miss_invalidation_and_corruption(tmp_path):
    model = make_model(image_size=64)
    cache = ArtefactCache(tmp_path)
    p1 = export_cached(model, cache)
    assert (cache.misses, cache.hits) == (1, 0)
    assert export_cached(model, cache) == p1 and cache.hits == 1
    manifest = json.loads(p1.with_name(p1.name + ".json").read_text())
    assert manifest["key"]["image_size"] == 64 and manifest["key"]["kind"] == "onnx"

    other = make_model(image_size=64, seed=5)  # other weights: another key, another file
    p2 = export_cached(other, cache)
    assert p2 != p1 and cache.misses == 2
    bigger = make_model(image_size=96)  # another input size
    assert export_cached(bigger, cache) not in (p1, p2)
    assert onnx_key(model, 64).digest() != onnx_key(model, 96).digest()

    data = bytearray(p1.read_bytes())  # corrupt the artefact: detected, rebuilt, never loaded
    data[len(data) // 2] ^= 0xFF
    p1.write_bytes(bytes(data))
    assert export_cached(model, cache) == p1 and cache.rebuilds == 1
    x = torch.randn(1, 3, 64, 64)
    from engines.base import position_encodings

    enc = OrtEncoder(p1, position_encodings(model, 64), model.device)
    with torch.inference_mode():
        ref = model.forward_image(x)["backbone_fpn"]
    assert len(ref) == LEVELS
    assert all((a - b).abs().max() < FEATURE_ATOL for a, b in zip(enc(x)["backbone_fpn"], ref, strict=True))

    p1.with_name(p1.name + ".json").write_text("{not json")  # a broken manifest: rebuilt too
    export_cached(model, cache)
    assert cache.rebuilds == 2
    m1 = export_cached(model, cache, kind="onnx-memory")  # the memory attention: its own kind and file
    assert m1.name.startswith("onnx-memory-") and export_cached(model, cache, kind="onnx-memory") == m1


def test_builders_sharing_the_cache_build_an_entry_once(tmp_path):
    """Two builders of one entry at once (two daemons starting on one host): the second waits for the first's
    lock, then loads what it built; neither reads the other's half-written files."""
    key = ArtefactKey("test", "weights", "model", 64, "fp32", "v1", "cpu")
    builds, building = [], threading.Event()

    def build(path):
        builds.append(path)
        building.set()
        time.sleep(0.5)  # keeps the first build in progress while the second arrives (no time is asserted)
        path.write_bytes(b"artefact")
        return path

    first, second = ArtefactCache(tmp_path), ArtefactCache(tmp_path)
    got = []
    t = threading.Thread(target=lambda: got.append(first.get_or_build(key, "bin", build)))
    t.start()
    assert building.wait(30)
    got.append(second.get_or_build(key, "bin", build))
    t.join(30)
    assert len(builds) == 1 and got[0] == got[1] and got[1].read_bytes() == b"artefact"
    assert (first.misses, second.misses, second.hits) == (1, 0, 1)


def test_each_graph_is_keyed_by_the_weights_it_holds():
    """A checkpoint differing only in its memory attention must not reuse a cached memory graph, and
    one differing only in its image encoder must not reuse a cached encoder graph."""
    base, mem, enc = (make_model(image_size=64) for _ in range(3))
    with torch.no_grad():
        mem.memory_attention.layers[0].linear1.weight.add_(1e-3)
        enc.image_encoder.neck.convs[0].conv.weight.add_(1e-3)
    key = {(name, kind): onnx_key(m, 64, kind).digest() for name, m in (("base", base), ("mem", mem), ("enc", enc))
           for kind in ("onnx", "onnx-memory")}
    assert key["mem", "onnx-memory"] != key["base", "onnx-memory"]
    assert key["mem", "onnx"] == key["base", "onnx"]
    assert key["enc", "onnx"] != key["base", "onnx"]
    assert key["enc", "onnx-memory"] == key["base", "onnx-memory"]


def test_unknown_backend(model):
    with pytest.raises(ValueError, match="unknown encoder backend 'tpu'"):
        make_encoder("tpu", model)


def test_memory_graph_builds_its_rotations_where_the_model_is():
    """sam2 computes the RoPE frequencies on the CPU; the graph (and so its export's trace) must hold them on
    the model's device, or a CUDA export dies on a device mismatch. "meta" stands in for the GPU here."""
    model = make_model(image_size=64).to("meta")
    graph = MemoryAttentionGraph(model, 64)
    assert graph.cos.device.type == graph.sin.device.type == "meta"
    hw = (64 // 16) ** 2
    inputs = [torch.zeros(n, 1, c, device="meta") for n, c in ((hw, 256), (hw, 256), (2 * hw, 64), (2 * hw, 64),
                                                                (8, 64), (8, 64))]
    with torch.no_grad():
        out = graph(*inputs)  # the export traces this call, with dummies on the model's device
    assert out.shape == (hw, 1, 256) and out.device.type == "meta"


def test_onnxruntime_runs_on_the_cpu_provider_only(model, cache_dir):
    """ONNX Runtime on a GPU is retired (docs/engines.md): sessions name the CPU provider, so an installed
    onnxruntime-gpu never picks CUDA silently, and a GPU device is refused with what to use instead."""
    enc = make_encoder("onnxruntime", model, cache_dir=cache_dir)
    assert enc.session.get_providers() == ["CPUExecutionProvider"]
    path = export_cached(model, ArtefactCache(cache_dir))
    with pytest.raises(ValueError, match="runs on the CPU, not on cuda:1: use backend torch or tensorrt"):
        OrtEncoder(path, enc.pos_enc, torch.device("cuda:1"))


class _FakeDataType:
    def __init__(self, name: str):
        self.name = name


class _FakeEngine:
    """What TensorRTEncoder reads of a deserialized plan: each tensor's shape and type."""

    def __init__(self, specs: dict[str, tuple[tuple[int, ...], str]]):
        self.specs = specs

    def get_tensor_shape(self, name):
        return self.specs[name][0]

    def get_tensor_dtype(self, name):
        return _FakeDataType(self.specs[name][1])


def test_tensorrt_buffers_take_shape_and_type_from_the_plan():
    from engines.tensorrt_backend import tensor_spec

    engine = _FakeEngine({"image": ((1, 3, 64, 64), "FLOAT"), "fpn0": ((1, 32, 16, 16), "HALF"),
                          "dyn": ((-1, 3, 64, 64), "FLOAT"), "fp8": ((1, 4), "FP8")})
    assert tensor_spec(engine, "image") == ((1, 3, 64, 64), torch.float32)
    assert tensor_spec(engine, "fpn0") == ((1, 32, 16, 16), torch.float16)  # an fp16 plan's output stays fp16
    for name in ("dyn", "fp8"):
        with pytest.raises(RuntimeError, match=f"TensorRT plan tensor '{name}' has shape"):
            tensor_spec(engine, name)


def test_tensorrt_adapter_uses_the_chosen_device_and_its_own_stream():
    """Static check of engines/tensorrt_backend.py (TensorRT cannot run here): no bare "cuda" device, the GPU
    name and streams of the chosen device, the engine enqueued on a stream of its own, never torch's current
    (possibly the legacy default) stream."""
    import ast
    from pathlib import Path

    import engines.tensorrt_backend as trt_backend

    tree = ast.parse(Path(trt_backend.__file__).read_text())
    calls = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            passed = [*node.args, *(k.value for k in node.keywords)]
            bare = [a for a in passed if isinstance(a, ast.Constant) and str(a.value).startswith("cuda")]
            assert not bare, f"line {node.lineno}: a device named by a constant, not the chosen one"
            if isinstance(node.func, ast.Attribute):
                calls.setdefault(node.func.attr, []).append(node)
    for name in ("get_device_name", "current_stream", "Stream", "device"):
        assert calls.get(name) and all(c.args for c in calls[name]), f"{name}() without the chosen device"
    (enqueue,) = calls["execute_async_v3"]
    assert ast.unparse(enqueue.args[0]) == "self._stream.cuda_stream"


def test_bench_engines_treats_cuda_n_as_a_gpu_and_passes_only_known_options(model, monkeypatch):
    """`samtrack bench engines` died with a TypeError on CUDA hosts (a removed `compile` option) and skipped
    the GPU backends on cuda:1."""
    import bench.engines
    from engines.torch_backend import TorchEncoder

    monkeypatch.setattr(bench.engines, "tensorrt_available", lambda: None)
    gpu = bench.engines._backends("cuda:1")
    assert [label for label, _, _ in gpu] == ["torch-fp32", "torch-bf16", "tensorrt-fp16", "tensorrt-fp32"]
    for _, name, opts in gpu:
        if name == "torch":
            TorchEncoder(model, **opts)  # every option is one the backend takes
    native = resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert [label for label, _, _ in bench.engines._backends("cpu")] == [
        "torch-fp32", *(["torch-bf16"] if native else []), "onnxruntime-fp32", "openvino"]


@pytest.mark.gpu
@pytest.mark.skipif(tensorrt_available() is not None, reason=str(tensorrt_available()))
def test_tensorrt_backend_fp32_matches_torch(tmp_path):
    """Both in IEEE fp32 (TF32 off: the fp32 policy of docs/engines.md), so 1e-3 holds on TF32 GPUs too."""
    use_ieee_fp32("fp32", torch.device("cuda"))
    model = make_model(image_size=SIZE).cuda()
    enc = make_encoder("tensorrt", model, cache_dir=tmp_path, precision="fp32")
    x = _image().cuda()
    with torch.inference_mode():
        ref = model.forward_image(x)["backbone_fpn"]
    assert len(ref) == LEVELS
    for a, b in zip(enc(x)["backbone_fpn"], ref, strict=True):
        assert (a - b).abs().max().item() < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_torch_cuda_backend_matches_cpu(model):
    """fp32 on CUDA is IEEE fp32 (TF32 off, docs/engines.md): within 1e-3 of the CPU on TF32 GPUs too."""
    use_ieee_fp32("fp32", torch.device("cuda"))
    x = _image()
    with torch.inference_mode():
        ref = model.forward_image(x)["backbone_fpn"]
        gpu = make_model(image_size=SIZE).cuda()
        out = make_encoder("torch", gpu)(x.cuda())["backbone_fpn"]
    assert len(ref) == LEVELS
    for a, b in zip(out, ref, strict=True):
        assert (a.cpu() - b).abs().max().item() < 1e-3


@pytest.mark.slow
def test_export_cli_and_daemon_on_onnxruntime(tmp_path):
    """`samtrack export` fills the cache; a daemon with --backend onnxruntime then reuses it and tracks."""
    import os
    import subprocess
    import sys

    from tests.daemon_helpers import start_daemon
    from tracker.client import Client

    env = {**os.environ, "SAMTRACK_ENGINE_CACHE": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "export", "--image-size", "64"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "cache built" in r.stdout and len(list(tmp_path.glob("onnx-*.onnx"))) == 2
    assert len(list(tmp_path.glob("onnx-memory-*.onnx"))) == 1
    r = subprocess.run([sys.executable, "-m", "tracker.cli", "export", "--image-size", "64"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and "cache hit" in r.stdout
    d = start_daemon("--backend", "onnxruntime", env={"SAMTRACK_ENGINE_CACHE": str(tmp_path)})
    try:
        with Client(d.commands, timeout=30) as c:
            res = c.add_points(1, [[80, 60]], [1])
            assert res["object"]["id"] == 1
            assert c.stats()["frames"] > 0
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("source", ["graphs.py", "export.py", "memory_graph.py"])
def test_a_change_to_the_graph_code_names_another_artefact(tmp_path, source):
    """The cache key holds a digest of the code that traces the graphs: a change to it names another artefact,
    so graphs traced by older code are not reused (the key held only weights, config, size and versions)."""
    root = Path(__file__).resolve().parents[1]
    script = ("from engines.cache import ArtefactKey; "
              "print(ArtefactKey('ov-encoder', 'w', 'model', 64, 'f32', 'openvino-x', 'cpu').digest())")

    def digest(tree: Path) -> str:
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tree,
                           env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout.strip()

    copy = tmp_path / "tree"
    shutil.copytree(root / "engines", copy / "engines", ignore=shutil.ignore_patterns("__pycache__"))
    assert digest(copy) == digest(root)  # the same code: the same key
    with open(copy / "engines" / source, "a") as f:
        f.write("\nGRAPH_CHANGED = True  # a change to the graph code\n")
    assert digest(copy) != digest(root)
