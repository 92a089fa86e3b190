"""`samtrack doctor`: what this machine runs (torch and its CUDA build, the NVIDIA driver, GPUs, backends), and
whether --device can run here; a device that cannot is one line on stderr and exit code 2."""

from __future__ import annotations


def add_doctor_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check torch, CUDA, the NVIDIA driver, GPUs and backends (OpenVINO on the "
                                      "CPU); exit 2 if --device cannot run here")
    p.add_argument("--device", default="cpu", help="the device to check: cpu, cuda, cuda:1 ...")
    p.set_defaults(func=run_doctor)


def report_lines(facts) -> list[str]:
    """The machine as `doctor` prints it."""
    import importlib.metadata as md

    import torch

    from engines.tensorrt_backend import tensorrt_available

    from ..core.precision import BF16_CPU_FLAGS, BF16_CUDA_CAPABILITY, cpu_flags
    from ..devices import MIN_DRIVER

    cuda = facts.torch_cuda
    need = MIN_DRIVER.get(int(cuda.split(".")[0])) if cuda else None
    lines = [f"torch {torch.__version__}: " + (f"CUDA {cuda} build (needs NVIDIA driver >= {need})" if cuda
                                               else "CPU-only build"),
             f"NVIDIA driver: {facts.driver or 'none loaded'}",
             f"CUDA usable: {'yes' if facts.available else 'no'}" + (f" ({facts.why})" if facts.why else "")]
    for i, g in enumerate(facts.gpus):
        native = "native" if g.capability >= BF16_CUDA_CAPABILITY else "emulated: precision auto picks fp32"
        lines.append(f"cuda:{i}: {g.name}, compute capability {g.capability[0]}.{g.capability[1]}, "
                     f"{g.memory_bytes / 2**30:.1f} GiB, bf16 {native}")
    if facts.arch_list:
        lines.append(f"torch kernels for: {' '.join(facts.arch_list)}")
    have = sorted(BF16_CPU_FLAGS & cpu_flags())
    lines.append(f"CPU bf16: {'native (' + ', '.join(have) + ')' if have else 'emulated: precision auto picks fp32'}")
    try:
        from sam2 import _C  # noqa: F401

        extension = "built (hole filling on)"
    except ImportError:
        extension = "not built (hole filling off, as in Meta's predictor without it)"
    lines.append(f"sam2 {md.version('sam2')}: CUDA extension {extension}")
    lines.append(f"backends: torch; openvino (below); onnxruntime {md.version('onnxruntime')} (CPU); "
                 f"tensorrt: {tensorrt_available() or 'available'}")
    lines.append(f"openvino: {_openvino()}")
    return lines


def _openvino() -> str:
    """OpenVINO as backend auto uses it on a CPU (precision auto: bf16 where the CPU has it)."""
    from engines.openvino_backend import cpu_precision, import_openvino, openvino_available

    why = openvino_available()
    if why is not None:
        return f"not available ({why}): backend auto runs torch on the CPU (slower)"
    return (f"{import_openvino().__version__} (CPU, computes in {cpu_precision()}): backend auto compiles the image "
            "encoder with it unless precision is fp32")


def run_doctor(args) -> int:
    from ..devices import check_device, cuda_facts

    facts = cuda_facts()
    print("\n".join(report_lines(facts)))
    check_device(args.device, facts)  # DeviceError: one line on stderr, exit code 2
    print(f"ok: {args.device} can run here")
    return 0
