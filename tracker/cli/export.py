"""`samtrack export`: build the compiled encoder (ONNX file, TensorRT plan) into the cache ahead of time."""

from __future__ import annotations

import time

from ..paths import dir_to_write
from .args import CHECKPOINT, HelpFormatter, image_size


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="build compiled encoder artefacts into the engine cache",
                       formatter_class=HelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_t", help="model name (see `samtrack weights list`)")
    p.add_argument("--checkpoint", type=CHECKPOINT,
                   help="checkpoint file (default: the cached one, else random weights)")
    p.add_argument("--image-size", type=image_size, default=512, help="model input size (a multiple of 32)")
    p.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime",
                   help="what to build: the ONNX graphs (onnxruntime) or a TensorRT plan for --device")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp16", help="TensorRT precision")
    p.add_argument("--device", default="cuda", help="the GPU a TensorRT plan is built for: cuda, cuda:1 ...")
    p.add_argument("--engine-cache", type=dir_to_write("engine cache directory"),
                   help="cache directory (default: $XDG_CACHE_HOME/samtrack/engines)")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from engines.cache import ArtefactCache
    from engines.onnxruntime_backend import export_cached

    from ..models import build_sam2_model, weights

    checkpoint = weights.resolve_checkpoint(args.model, args.checkpoint)
    cache = ArtefactCache(Path(args.engine_cache) if args.engine_cache else None)
    steps = ["load model", "export encoder ONNX"]
    steps += ["export memory ONNX"] if args.backend == "onnxruntime" else ["build TensorRT plan"]
    t0 = time.monotonic()
    with tqdm(total=len(steps), unit="step", bar_format="{desc:<22} {bar} {n}/{total} [{elapsed}]") as bar:
        bar.set_description(steps[0])
        model = build_sam2_model(args.model, checkpoint, args.image_size,
                                 device=args.device if args.backend == "tensorrt" else "cpu")
        bar.update()
        bar.set_description(steps[1])
        paths = [export_cached(model, cache)]
        bar.update()
        if args.backend == "onnxruntime":
            bar.set_description(steps[2])
            paths.append(export_cached(model, cache, kind="onnx-memory"))
            bar.update()
        else:
            from engines.tensorrt_backend import TensorRTEncoder

            bar.set_description(steps[2])
            TensorRTEncoder.for_model(model, cache.directory, precision=args.precision)
            bar.update()
    for path in paths:
        print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")
    print(f"cache {'hit' if cache.hits == len(paths) else 'built'} in {time.monotonic() - t0:.1f} s")
    return 0
