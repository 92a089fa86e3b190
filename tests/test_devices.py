"""Devices at start-up: which backends run on which device, whether CUDA can run here and what to install when
it cannot (`samtrack doctor`, the daemon's start), native bf16 by compute capability, the TF32 policy."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from engines.factory import check_backend_device
from tracker import Tracker
from tracker.build import AUTO_OPENVINO_OTHERWISE, auto_openvino_parts
from tracker.core.precision import resolve_precision, use_ieee_fp32
from tracker.devices import CudaFacts, Gpu, check_device, cpu_info, cuda_problem, nvidia_driver
from tracker.errors import DeviceError

H100 = Gpu("NVIDIA H100 80GB HBM3", (9, 0), 80 << 30)
T4 = Gpu("Tesla T4", (7, 5), 16 << 30)
V100 = Gpu("Tesla V100-SXM2-16GB", (7, 0), 16 << 30)
CU130_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120")
NO_CUDA_HERE = not torch.cuda.is_available()


def _facts(**kw) -> CudaFacts:
    base = {"torch_cuda": "13.0", "driver": "580.65.06", "available": True, "gpus": (H100,),
            "arch_list": CU130_ARCHS}
    return CudaFacts(**{**base, **kw})


@pytest.mark.parametrize("backend, device, ok", [
    ("torch", "cpu", True), ("torch", "cuda:1", True), ("onnxruntime", "cpu", True), ("tensorrt", "cuda", True),
    ("tensorrt", "cuda:1", True), ("tensorrt", "cpu", False), ("onnxruntime", "cuda", False),
    ("onnxruntime", "cuda:1", False)])
def test_which_backend_runs_on_which_device(backend, device, ok):
    if ok:
        check_backend_device(backend, device)
        return
    with pytest.raises(ValueError, match=f"backend {backend} runs on .* devices, not on {device}: pass --device") as e:
        check_backend_device(backend, device)
    assert "or a backend for" in str(e.value) and "torch" in str(e.value)  # says what to choose instead


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown backend 'tpu'; one of torch, onnxruntime, tensorrt"):
        check_backend_device("tpu", "cpu")


def test_a_backend_that_cannot_run_on_the_device_is_refused_before_the_model_is_built(monkeypatch):
    """tensorrt with the default device cpu used to give features on cuda and a model on the cpu."""
    import tracker.build

    def must_not_build(*a, **k):
        raise AssertionError("the model was built before the backend was checked")

    monkeypatch.setattr(tracker.build, "build_sam2_model", must_not_build)
    with pytest.raises(DeviceError, match="backend tensorrt runs on cuda devices, not on cpu"):
        Tracker.build(image_size=64, backend="tensorrt", device="cpu")


def test_cuda_facts_are_diagnosed_with_what_to_install():
    cuda1 = torch.device("cuda:1")
    assert cuda_problem(torch.device("cuda"), _facts()) is None
    assert cuda_problem(torch.device("cuda:0"), _facts(gpus=(T4,))) is None  # sm_75 kernels are in the build
    cases = [
        (_facts(torch_cuda=None, driver=None, available=False), ["CPU-only build", "install a CUDA build"]),
        (_facts(driver=None, available=False, gpus=()), ["no NVIDIA driver is loaded", "driver >= 580",
                                                        "--device cpu"]),
        (_facts(driver="550.54.14", available=False, gpus=()), ["driver 550.54.14 is too old", "CUDA 13.0",
                                                               "needs driver >= 580", "CUDA 12 builds need >= 525"]),
        (_facts(available=False, gpus=(), why="CUDA unknown error"), ["unusable although NVIDIA driver 580.65.06",
                                                                       "CUDA unknown error", "CUDA_VISIBLE_DEVICES"]),
        (_facts(gpus=(V100,)), ["Tesla V100", "compute capability 7.0", "no kernels", "sm_75"]),
    ]
    for facts, words in cases:
        problem = cuda_problem(torch.device("cuda"), facts)
        assert problem is not None and all(w in problem for w in words), (problem, words)
    problem = cuda_problem(cuda1, _facts())
    assert problem == ("there is no cuda:1: this machine's CUDA GPUs are cuda:0 (NVIDIA H100 80GB HBM3); pass one "
                       "of those")
    assert cuda_problem(cuda1, _facts(gpus=(H100, T4))) is None
    # an older CUDA build runs on the driver its major version needs
    assert cuda_problem(torch.device("cuda"), _facts(torch_cuda="12.8", driver="535.104.05", arch_list=())) is None
    # PTX for a newer architecture's family runs (JIT); an sm_ binary of a higher minor does not
    assert cuda_problem(torch.device("cuda"), _facts(gpus=(Gpu("next", (12, 1), 1),), arch_list=("compute_120",))) \
        is None
    assert cuda_problem(torch.device("cuda"), _facts(gpus=(Gpu("x", (8, 0), 1),), arch_list=("sm_86",))) is not None


def test_check_device_names_the_flag_and_accepts_the_cpu():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"--device 'gpu0' is not a torch device: use cpu, cuda or cuda:N"):
        check_device("gpu0")
    with pytest.raises(DeviceError, match="^--device cuda:1: there is no cuda:1"):
        check_device("cuda:1", _facts())
    assert check_device("cuda:0", _facts()) == torch.device("cuda:0")


def test_nvidia_driver_version_is_read_from_the_kernel_module_line(tmp_path):
    lines = {"NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024": "550.54.14",
             "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs-builder@U16)":
             "580.65.06", "something else": None}
    for line, version in lines.items():
        f = tmp_path / "version"
        f.write_text(line + "\nGCC version:  gcc version 12.2.0\n")
        assert nvidia_driver(f) == version
    assert nvidia_driver(tmp_path / "absent") is None


def test_auto_precision_picks_bf16_only_on_gpus_that_compute_it_natively(monkeypatch):
    """torch.cuda.is_bf16_supported() counts emulation (T4, RTX 20xx) and asks the current device: the
    chosen device's compute capability decides."""
    asked = []

    def capability(device=None):
        asked.append(device)
        return {1: (7, 5), 2: (8, 6), 3: (9, 0)}[torch.device(device).index]

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation counted: not asked
    assert resolve_precision("auto", torch.device("cuda:1")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda:2")) == "bf16"
    assert resolve_precision("auto", torch.device("cuda:3")) == "bf16"
    assert [torch.device(d) for d in asked] == [torch.device(f"cuda:{i}") for i in (1, 2, 3)]
    assert resolve_precision("bf16", torch.device("cuda:1")) == "bf16"  # asked for: given


@pytest.fixture
def tf32_switches():
    saved = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = "tf32", "tf32"
    yield
    torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved


def _switches() -> tuple[str, str]:
    return torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision


def test_fp32_on_cuda_turns_tf32_off(tf32_switches):
    """The TF32 policy (docs/engines.md): fp32 means IEEE fp32 on a GPU; bf16 and the CPU leave torch alone."""
    use_ieee_fp32("bf16", torch.device("cuda"))
    use_ieee_fp32("fp32", torch.device("cpu"))
    assert _switches() == ("tf32", "tf32")
    use_ieee_fp32("fp32", torch.device("cuda:1"))
    assert _switches() == ("ieee", "ieee")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(not NO_CUDA_HERE, reason="checks a machine without a usable CUDA device")
def test_serve_with_cuda_unusable_exits_2_before_loading_a_model():
    r = _cli("serve", "--device", "cuda", "--source", "test:", "--no-metrics")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("samtrack: error: --device cuda: ") and r.stderr.count("\n") == 1, r.stderr
    assert "--device cpu" in r.stderr and "RANDOM weights" not in r.stderr  # no model was built


def test_serve_with_a_backend_for_another_device_exits_2():
    r = _cli("serve", "--backend", "tensorrt", "--source", "test:", "--no-metrics")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "backend tensorrt runs on cuda devices, not on cpu: pass --device cuda" in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


@pytest.mark.skipif(not NO_CUDA_HERE, reason="checks a machine without a usable CUDA device")
def test_doctor_reports_the_machine_and_refuses_a_device_that_cannot_run():
    r = _cli("doctor", "--device", "cuda:1")
    assert r.returncode == 2 and r.stderr.startswith("samtrack: error: --device cuda:1: "), r.stderr
    assert f"torch {torch.__version__}" in r.stdout and "NVIDIA driver:" in r.stdout and "backends:" in r.stdout
    ok = _cli("doctor")
    assert ok.returncode == 0 and "ok: cpu can run here" in ok.stdout, ok.stderr


@pytest.mark.parametrize(("vendor", "flags", "isa"), [
    ("GenuineIntel", "fpu avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile", "amx"),
    ("AuthenticAMD", "fpu avx2 fma avx512f avx512_bf16", "avx512-bf16"),
    ("GenuineIntel", "fpu avx2 fma avx512f", "avx512"),
    ("AuthenticAMD", "fpu avx2 fma", "avx2"),
    ("GenuineIntel", "fpu sse4_2", "sse"),
])
def test_the_cpu_is_read_from_cpuinfo(tmp_path, vendor, flags, isa):
    f = tmp_path / "cpuinfo"
    f.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\ncpu MHz\t\t: 2400.000\nflags\t\t: {flags}\n\n"
                 f"processor\t: 1\nvendor_id\t: {vendor}\ncpu MHz\t\t: 2600.500\nflags\t\t: {flags}\n")
    cpu = cpu_info(f)
    assert (cpu.isa, cpu.amd, cpu.mhz) == (isa, vendor == "AuthenticAMD", 2600.5)
    assert cpu_info(tmp_path / "missing") == cpu_info(tmp_path)  # unreadable: no flags, 2 GHz
    assert cpu_info(tmp_path).isa == "sse" and cpu_info(tmp_path).mhz == 2000.0


def test_auto_compiles_the_parts_measured_for_this_cpus_arithmetic():
    assert auto_openvino_parts() == auto_openvino_parts(cpu_info().isa)
    assert auto_openvino_parts("a CPU never measured") == AUTO_OPENVINO_OTHERWISE == ("encoder",)
    assert "encoder" in auto_openvino_parts("avx512-bf16") and "encoder" in auto_openvino_parts("amx")
