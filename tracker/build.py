"""Choosing what a Tracker runs on: Meta's model from a checkpoint (or seeded random weights) and the engine
backend named by the caller, or chosen for the device ("auto"). Lives beside the core so the core never picks a
backend itself."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from engines.base import PARTS, Engines
from engines.factory import check_backend_device, make_engines

from .devices import check_device, cpu_info
from .errors import DeviceError
from .models import build_sam2_model

log = logging.getLogger(__name__)
_said: set[str] = set()  # what auto's fallbacks already told the log (once per process)
# The parts auto compiles with OpenVINO, by the CPU's widest arithmetic (tracker.devices.CpuInfo.isa); torch runs
# the others. Each kind measured in its own run, interleaved with torch (docs/benchmarks.md, "Which parts auto
# compiles"):
# - avx512-bf16 (AMD EPYC, Zen 4): every part. The rotate-half memory attention in OpenVINO bf16 takes 156 ms
#   where torch bf16 takes 246 (512 px, full memory); with every part compiled torch's thread pool is left the
#   pre- and post-processing only, so the two pools barely meet.
# - amx (Intel Xeon): the encoder (0.55x torch bf16). Memory attention was measured slower there (torch bf16 82 ms,
#   OpenVINO 108) with the earlier graph only: rerun `samtrack bench vs-meta --openvino-parts ...` there.
# - avx512, avx2 (f32): the encoder (0.83x torch's time); the per-object parts within noise of torch, and a
#   second thread pool beside torch's costs more on two cores.
AUTO_OPENVINO_PARTS = {"avx512-bf16": PARTS}
AUTO_OPENVINO_OTHERWISE = ("encoder",)


def auto_openvino_parts(isa: str | None = None) -> tuple[str, ...]:
    """The parts backend auto compiles with OpenVINO on a CPU of this ISA (default: this machine's)."""
    return AUTO_OPENVINO_PARTS.get(isa or cpu_info().isa, AUTO_OPENVINO_OTHERWISE)

def build_parts(model: str, checkpoint: str | os.PathLike | None, image_size: int, device: str, seed: int,
                threads: int | None, backend: str, engine_cache: str | os.PathLike | None, precision: str = "auto",
                parts: tuple[str, ...] | None = None) -> tuple[torch.nn.Module, Engines]:
    """The sam2 model and its engines for `backend` (parts: those it runs, as `engines_for`). The device, and a
    named backend on it, are checked first: DeviceError says what to install or pass before any model is loaded."""
    check_device(device)
    if backend != "auto":
        try:
            check_backend_device(backend, device)
        except ValueError as e:
            raise DeviceError(str(e)) from None
    if checkpoint is None:
        from .models.weights import random_weights_warning

        log.warning("%s", random_weights_warning(model))
    net = build_sam2_model(model, checkpoint, image_size, device, seed, threads)
    return net, engines_for(net, backend, engine_cache, precision, threads, parts)


def engines_for(model: torch.nn.Module, backend: str, engine_cache: str | os.PathLike | None = None,
                precision: str = "auto", threads: int | None = None, parts: tuple[str, ...] | None = None) -> Engines:
    """The engines of `backend` (resolved by `resolve_backend` when "auto") for a built model. parts: those
    OpenVINO runs (a replay names a recorded session's); default auto_openvino_parts() for auto, all when named."""
    cache = Path(engine_cache) if engine_cache else None
    name = resolve_backend(backend, model, precision, cache)
    if name == "torch":
        return Engines.of(model)
    if parts is None:
        parts = auto_openvino_parts() if backend == "auto" else None  # named: every part the backend compiles
    try:
        return make_engines(name, model, cache_dir=cache, threads=threads, parts=parts)
    except ValueError as e:
        raise DeviceError(str(e)) from None


def resolve_backend(backend: str, model: torch.nn.Module, precision: str = "auto", cache: Path | None = None) -> str:
    """A named backend as is; "auto": precision fp32 keeps Meta's exact torch arithmetic; otherwise OpenVINO on
    CPUs (the parts of `auto_openvino_parts`; torch where it is not installed, said once), TensorRT on GPUs where a
    plan is built for this model (`samtrack export --backend tensorrt`), else torch."""
    if backend != "auto":
        return backend
    kind = model.device.type
    if precision == "fp32":
        return "torch"
    if kind == "cuda":
        from engines.tensorrt_backend import plan_cached

        return "tensorrt" if plan_cached(model, cache) else "torch"
    if kind == "cpu":
        from engines.openvino_backend import openvino_available

        why = openvino_available()
        if why is None:
            return "openvino"
        if why not in _said:
            _said.add(why)
            log.warning("backend auto: %s; torch runs on the CPU instead (slower)", why)
    return "torch"
