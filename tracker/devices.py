"""Whether a torch device can run here and, when it cannot, what to install or pass instead: checked at
start-up (before any model is built) and reported by `samtrack doctor`."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import DeviceError

# The oldest NVIDIA driver (Linux) that runs each CUDA major version (NVIDIA's minor version compatibility
# table): torch 2.14.1's CUDA 13 build needs 580.
MIN_DRIVER = {11: 450, 12: 525, 13: 580}
NVIDIA_VERSION_FILE = Path("/proc/driver/nvidia/version")
CPUINFO_FILE = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """What decides how fast a CPU computes: its vendor, vector instruction sets and clock (/proc/cpuinfo)."""

    amd: bool
    flags: frozenset[str]
    mhz: float  # the highest clock any core reports (2000 where none does)

    @property
    def isa(self) -> str:
        """The widest arithmetic it has: "amx", "avx512-bf16", "avx512", "avx2" or "sse"."""
        if "amx_bf16" in self.flags:
            return "amx"
        if "avx512_bf16" in self.flags:
            return "avx512-bf16"
        return "avx512" if "avx512f" in self.flags else "avx2" if "avx2" in self.flags else "sse"


def cpu_info(path: Path = CPUINFO_FILE) -> CpuInfo:
    """This machine's CPU (an unreadable cpuinfo: no flags, an SSE CPU at 2 GHz)."""
    try:
        text = path.read_text()
    except OSError:
        text = ""
    found = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    mhz = [float(x) for x in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    return CpuInfo("AuthenticAMD" in text, frozenset(found.group(1).split() if found else ()),
                   max(mhz) if mhz else 2000.0)


@dataclass(frozen=True)
class Gpu:
    """One visible CUDA GPU."""

    name: str
    capability: tuple[int, int]
    memory_bytes: int


@dataclass(frozen=True)
class CudaFacts:
    """What decides whether CUDA runs here: gathered by `cuda_facts()`, or written by hand in tests."""

    torch_cuda: str | None  # the CUDA version this torch was built for; None: a CPU-only build
    driver: str | None  # the loaded NVIDIA kernel driver, e.g. "580.65.06"; None: none loaded
    available: bool  # torch.cuda.is_available()
    gpus: tuple[Gpu, ...] = ()  # visible GPUs, cuda:0 first
    arch_list: tuple[str, ...] = ()  # architectures this torch has kernels for, e.g. "sm_90"
    why: str = ""  # what torch said while CUDA failed to initialise


def nvidia_driver(path: Path = NVIDIA_VERSION_FILE) -> str | None:
    """The loaded NVIDIA kernel driver's version (e.g. "580.65.06"), None where none is loaded."""
    try:
        line = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    m = re.search(r"Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", line + " ")
    return m.group(1) if m else None


def cuda_facts() -> CudaFacts:
    """The facts of this machine and this torch build."""
    with warnings.catch_warnings(record=True) as caught:  # torch says why CUDA failed in a warning
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    gpus: tuple[Gpu, ...] = ()
    if available:
        gpus = tuple(Gpu(torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i),
                         torch.cuda.get_device_properties(i).total_memory) for i in range(torch.cuda.device_count()))
    why = "; ".join(str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip())
    return CudaFacts(torch.version.cuda, nvidia_driver(), available, gpus,
                     tuple(torch.cuda.get_arch_list()) if available else (), why)


def _arch_supported(capability: tuple[int, int], arch_list: tuple[str, ...]) -> bool:
    """Whether kernels for one of `arch_list` run on a GPU of this compute capability: a binary (sm_XY) for
    the same major version and a minor version not above it, or PTX (compute_XY) not above it."""
    if not arch_list:
        return True  # unknown: let torch decide
    for arch in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)[af]?", arch)
        if m is None:
            continue
        major, minor = int(m.group(2)), int(m.group(3))
        if (m.group(1) == "sm" and major == capability[0] and minor <= capability[1]) or \
                (m.group(1) == "compute" and (major, minor) <= capability):
            return True
    return False


def cuda_problem(device: torch.device, facts: CudaFacts) -> str | None:
    """None when `device` (a CUDA device) can run with these facts, else what is wrong and what to do."""
    cuda = facts.torch_cuda
    need = MIN_DRIVER.get(int(cuda.split(".")[0])) if cuda else None
    driver_hint = f"NVIDIA driver >= {need}" if need else "a recent NVIDIA driver"
    if cuda is None:
        return (f"this torch ({torch.__version__}) is a CPU-only build: install a CUDA build (./setup.sh installs "
                f"torch 2.14.1 for CUDA 13, which needs NVIDIA driver >= {MIN_DRIVER[13]}), or run with --device cpu")
    if facts.driver is None and not facts.available:
        return (f"no NVIDIA driver is loaded (no GPU here, or its driver is not installed): install {driver_hint} "
                f"for this torch's CUDA {cuda} build, or run with --device cpu")
    if facts.driver is not None and need is not None and int(facts.driver.split(".")[0]) < need:
        return (f"NVIDIA driver {facts.driver} is too old for this torch's CUDA {cuda} build, which needs driver >= "
                f"{need}: install a newer driver, or a torch built for an older CUDA (CUDA 12 builds need >= "
                f"{MIN_DRIVER[12]}), or run with --device cpu")
    if not facts.available:
        said = f" (torch: {facts.why})" if facts.why else ""
        return (f"CUDA is unusable although NVIDIA driver {facts.driver} is loaded{said}: check nvidia-smi and "
                f"CUDA_VISIBLE_DEVICES, or run with --device cpu")
    index = device.index or 0
    if index >= len(facts.gpus):
        have = ", ".join(f"cuda:{i} ({g.name})" for i, g in enumerate(facts.gpus)) or "none visible"
        return f"there is no {device}: this machine's CUDA GPUs are {have}; pass one of those"
    gpu = facts.gpus[index]
    if not _arch_supported(gpu.capability, facts.arch_list):
        cap = ".".join(map(str, gpu.capability))
        return (f"cuda:{index} ({gpu.name}, compute capability {cap}) has no kernels in this torch's CUDA {cuda} "
                f"build ({', '.join(facts.arch_list)}): install a torch build for an older CUDA, or use another GPU")
    return None


def check_device(device: str | torch.device, facts: CudaFacts | None = None) -> torch.device:
    """The device, if it can run here; else DeviceError saying what to install or pass instead."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DeviceError(f"--device {device!r} is not a torch device: use cpu, cuda or cuda:N ({e})") from None
    if dev.type != "cuda":
        return dev
    problem = cuda_problem(dev, facts or cuda_facts())
    if problem is not None:
        raise DeviceError(f"--device {device}: {problem}")
    return dev
