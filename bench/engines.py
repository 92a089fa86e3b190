"""Backends compared in one run: the image encoder alone, the memory attention alone (a full memory:
7 frames and 16 object pointers) and the full tracking step, at each image size, interleaved
iteration by iteration so all backends see the same machine load.

    python -m bench.engines                 # 512 and 1024, every backend available here
    python -m bench.engines --sizes 512 --iters 10
    python -m bench.engines --device cuda:1 --sizes 1024 --backends torch-bf16 tensorrt-fp16
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from bench.common import environment, percentiles, sync, table, write_json
from bench.scenario import JSON_OUT, outputs
from engines.base import Engines
from engines.factory import make_encoder, make_engines
from engines.openvino_backend import openvino_available
from engines.tensorrt_backend import tensorrt_available
from pipelines.synthetic import box_of_first_shape, moving_shapes_frame
from tracker import Tracker
from tracker.core.options import TrackerOptions
from tracker.core.precision import compute_context, resolve_precision
from tracker.models import seeded_model
from tracker.paths import dir_to_write

FRAME_W, FRAME_H = 640, 480


def _backends(device: str) -> list[tuple[str, str, dict]]:
    """(label, backend name, options) for every backend that can run on `device` here; torch-fp32 first, the
    baseline of the speedups. options: the tracker's "precision", and "encoder" options of a compiled encoder."""
    kind = torch.device(device).type
    out = [("torch-fp32", "torch", {"precision": "fp32"})]
    if kind == "cuda" or resolve_precision("auto", torch.device(device)) == "bf16":
        out += [("torch-bf16", "torch", {"precision": "bf16"})]
    if kind == "cpu":
        out += [("onnxruntime-fp32", "onnxruntime", {"precision": "fp32"})]
        if openvino_available() is None:
            out += [("openvino", "openvino", {"precision": "auto"})]  # bf16 where the CPU has it, else f32
    if kind == "cuda" and tensorrt_available() is None:
        out += [("tensorrt-fp16", "tensorrt", {"precision": "fp32", "encoder": {"precision": "fp16"}}),
                ("tensorrt-fp32", "tensorrt", {"precision": "fp32", "encoder": {"precision": "fp32"}})]
    return out


def _chosen(args) -> list[tuple[str, str, dict]]:
    """The backends of --backends (all that run here by default); torch-fp32 always, as the baseline."""
    available = _backends(args.device)
    if not args.backends:
        return available
    unknown = set(args.backends) - {label for label, _, _ in available}
    if unknown:
        raise SystemExit(f"--backends {' '.join(sorted(unknown))}: not available on {args.device} here; "
                         f"available: {' '.join(label for label, _, _ in available)}")
    return [b for b in available if b[0] == "torch-fp32" or b[0] in args.backends]


def bench_size(size: int, args, cache_dir: str) -> dict:
    model = seeded_model(args.model, image_size=size, device=args.device)  # objects present: every stage runs
    backends = _chosen(args)
    engines = {label: _engines(name, model, opts, cache_dir) for label, name, opts in backends}
    arithmetic = {label: resolve_precision(opts["precision"], model.device) for label, _, opts in backends}
    image = torch.randn(1, 3, size, size, device=args.device)
    enc_times: dict[str, list[float]] = {k: [] for k in engines}
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            for label, e in engines.items():
                sync(args.device)
                t0 = time.perf_counter()
                with compute_context(arithmetic[label], model.device):  # torch-bf16 under autocast, as tracked
                    e.encoder(image)
                sync(args.device)
                if i >= args.warmup:
                    enc_times[label].append(time.perf_counter() - t0)
    attn_times = _time_memory_attention(model, size, {k: e.memory_attention for k, e in engines.items()}, args)
    trackers = {}
    for label, _name, opts in backends:
        t = Tracker(model, TrackerOptions.from_model(model, precision=opts["precision"]), engines[label])
        t.step(moving_shapes_frame(0, FRAME_H, FRAME_W))
        t.add_box(1, box_of_first_shape(0, FRAME_H, FRAME_W))
        trackers[label] = t
    step_times: dict[str, list[float]] = {k: [] for k in trackers}
    for i in range(1, 1 + args.warmup + args.iters):
        frame = moving_shapes_frame(i, FRAME_H, FRAME_W)
        for label, t in trackers.items():
            sync(args.device)
            t0 = time.perf_counter()
            t.step(frame)
            sync(args.device)
            if i > args.warmup:
                step_times[label].append(time.perf_counter() - t0)
    base_enc = np.median(enc_times["torch-fp32"])
    base_step = np.median(step_times["torch-fp32"])
    base_attn = np.median(attn_times["torch-fp32"])
    return {
        label: {"encoder": percentiles(enc_times[label]), "memory_attention": percentiles(attn_times[label]),
                "step": percentiles(step_times[label]),
                "encoder_speedup_vs_torch": float(base_enc / np.median(enc_times[label])),
                "memory_attention_speedup_vs_torch": float(base_attn / np.median(attn_times[label])),
                "step_speedup_vs_torch": float(base_step / np.median(step_times[label]))}
        for label in engines
    }


def _engines(name: str, model, opts: dict, cache_dir: str) -> Engines:
    """Every part of backend `name` (the tracker runs its compiled parts and Meta's modules for the rest)."""
    if name == "torch":
        return Engines.of(model)
    if "encoder" in opts:  # a compiled encoder of a chosen precision (TensorRT's fp16 or fp32 plan)
        return Engines.of(model, name, encoder=make_encoder(name, model, cache_dir=cache_dir, **opts["encoder"]))
    return make_engines(name, model, cache_dir=cache_dir)


def _time_memory_attention(model, size: int, attn: dict, args) -> dict[str, list[float]]:
    """Seconds per call with a full memory: 7 memory frames and 16 pointers (4 tokens each)."""
    hw, dev = (size // 16) ** 2, args.device
    n_ptr = 16 * (model.hidden_dim // model.mem_dim)
    g = torch.Generator(device=dev).manual_seed(0)
    curr, curr_pos = (torch.randn(hw, 1, model.hidden_dim, generator=g, device=dev) for _ in range(2))
    memory, memory_pos = (torch.randn(7 * hw + n_ptr, 1, model.mem_dim, generator=g, device=dev) for _ in range(2))
    times: dict[str, list[float]] = {k: [] for k in attn}
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            for label, fn in attn.items():
                sync(dev)
                t0 = time.perf_counter()
                fn(curr=[curr], curr_pos=[curr_pos], memory=memory, memory_pos=memory_pos, num_obj_ptr_tokens=n_ptr)
                sync(dev)
                if i >= args.warmup:
                    times[label].append(time.perf_counter() - t0)
    return times


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="samtrack bench engines", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="image sizes measured")
    p.add_argument("--model", default="sam2.1_hiera_t", help="model name (see `samtrack weights list`)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument("--backends", nargs="+", metavar="LABEL",
                   help="only these (e.g. torch-bf16 tensorrt-fp16; torch-fp32 always runs, the baseline)")
    p.add_argument("--iters", type=int, default=5, help="measured iterations per backend")
    p.add_argument("--warmup", type=int, default=2, help="iterations run first and not measured")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of every backend (pinned, recorded)")
    p.add_argument("--engine-cache", type=dir_to_write("engine cache directory"),
                   help="artefact cache (default: a temporary directory)")
    p.add_argument("--out", type=JSON_OUT, default="bench-results/engines.json", help="JSON path")
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = {str(s): bench_size(s, args, args.engine_cache or tmp) for s in args.sizes}
    data = {"benchmark": "engines", "settings": {k: getattr(args, k) for k in ("sizes", "model", "device",
                                                                               "iters", "warmup", "backends")},
            "environment": environment(args.threads, args.device), "results": results}
    write_json(out, data)
    rows = [[size, label, r["encoder"]["p50_ms"], r["encoder_speedup_vs_torch"], r["memory_attention"]["p50_ms"],
             r["memory_attention_speedup_vs_torch"], r["step"]["p50_ms"], r["step_speedup_vs_torch"]]
            for size, by in results.items() for label, r in by.items()]
    print(table(rows, ["size", "backend", "encoder p50 ms", "encoder x", "mem-attn p50 ms", "mem-attn x",
                       "step p50 ms", "step x"]))
    print(f"wrote {out}")
    return data


if __name__ == "__main__":
    main()
