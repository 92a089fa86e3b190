"""Scenario `int8`: the image encoder quantized to int8 by NNCF's post-training quantization against the
OpenVINO encoder auto runs (bf16 or f32, by the CPU): ms per call, alternated call by call on the same frame;
the features' relative error against OpenVINO f32; and the tolerance contract of docs/engines.md for a tracker
whose encoder is the int8 one (the other parts as auto runs them) against the exact fp32 path. Says whether
auto should adopt int8 on this CPU: faster and the contract holding.

Quantization: `ModelType.TRANSFORMER` (SmoothQuant on; LayerNorm, softmax and GELU kept in float), the overflow
fix on CPUs without VNNI (AVX2: int8 products could saturate), calibrated on frames of the synthetic scenes and
on the photos matplotlib ships (no installed package ships a video clip).

    samtrack bench int8 [--quick] [--image-size 512] [--calls 10] [--out FILE]
"""

from __future__ import annotations

import dataclasses
import glob
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench import contract
from bench.common import Progress, environment, percentiles, table, write_json
from bench.scenario import outputs, scenario_parser
from engines.openvino_backend import compile_encoder, cpu_precision, encoder_ir, import_openvino
from pipelines.scenes import SCENES, Scene
from pipelines.synthetic import moving_shapes_frame
from tracker import Tracker
from tracker.build import engines_for
from tracker.core.options import TrackerOptions
from tracker.core.preprocess import Preprocessor
from tracker.devices import cpu_info
from tracker.models import seeded_model

SCENE_FRAMES = (0, 7)  # frames of each synthetic scene calibrated on: two poses each
PHOTOS = 4  # matplotlib's sample photos calibrated on (real images beside the synthetic ones)
SPEEDUP_TO_ADOPT = 0.95  # int8's time over the default's below which it is worth its error (5 %: above noise)


def calibration_frames(width: int, height: int) -> list[np.ndarray]:
    """RGB frames: two of each synthetic scene, two of the moving shapes and matplotlib's sample photos."""
    import matplotlib

    frames = [Scene(name, width, height).frame(i).image for name in SCENES for i in SCENE_FRAMES]
    frames += [moving_shapes_frame(i, height, width) for i in (0, 5)]
    data = Path(matplotlib.get_data_path()) / "sample_data"
    photos = sorted(glob.glob(str(data / "*.jpg")) + glob.glob(str(data / "*.png")))[:PHOTOS]
    return frames + [np.array(Image.open(f).convert("RGB")) for f in photos]


def quantize(ir: Path, inputs: list[np.ndarray], out: Path) -> Path:
    """The IR quantized to int8 by NNCF, saved at `out`."""
    import nncf

    ov = import_openvino()
    overflow = nncf.OverflowFix.DISABLE if {"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_info().flags \
        else nncf.OverflowFix.ENABLE
    q = nncf.quantize(ov.Core().read_model(str(ir)), nncf.Dataset(inputs), model_type=nncf.ModelType.TRANSFORMER,
                      subset_size=len(inputs),
                      advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=overflow))
    ov.save_model(q, str(out), compress_to_fp16=False)
    return out


def _relative_errors(encoder, reference, x: torch.Tensor) -> list[float]:
    a, b = encoder(x)["backbone_fpn"], reference(x)["backbone_fpn"]
    return [float((p - q).norm() / q.norm()) for p, q in zip(a, b)]


def run(args, progress: Progress) -> dict:
    model = seeded_model(args.model, args.image_size)
    engines = engines_for(model, "auto", threads=args.threads)
    if engines.name != "openvino" or "encoder" not in engines.compiled:
        raise RuntimeError(f"auto runs {engines.name} here, not OpenVINO's encoder: nothing to compare int8 with")
    precision = cpu_precision()  # what the backend compiles its parts in here
    pre = Preprocessor(args.image_size, torch.device("cpu"))
    inputs = [pre(f).numpy() for f in calibration_frames(args.width, args.height)]
    progress(f"quantizing the encoder on {len(inputs)} frames (minutes at 512 px on 2 cores)")
    t0 = time.monotonic()
    ir = quantize(encoder_ir(model), inputs, Path(args.work) / "encoder-int8.xml")
    quantize_s = time.monotonic() - t0
    int8 = compile_encoder(model, ir, args.threads, precision)
    reference = compile_encoder(model, encoder_ir(model), args.threads, "f32")
    x = torch.from_numpy(inputs[0])
    times: dict[str, list[float]] = {"default": [], "int8": []}
    for _ in range(args.calls):
        for name, enc in (("default", engines.encoder), ("int8", int8)):
            t = time.perf_counter()
            enc(x)
            times[name].append(time.perf_counter() - t)
    errors = {"default": _relative_errors(engines.encoder, reference, x), "int8": _relative_errors(int8, reference, x)}
    progress("the tolerance contract: 100 frames, exact fp32 against int8's encoder")
    exact = Tracker.from_sam2(model, precision="fp32")
    fast = Tracker(model, TrackerOptions.from_model(model), dataclasses.replace(engines, encoder=int8))
    agreement = contract.measure(exact, fast)
    warm = slice(1, None)  # the first call of each sets up its buffers
    ratio = float(np.median(times["int8"][warm]) / np.median(times["default"][warm]))
    return {"default_precision": precision, "quantize_s": quantize_s, "calibration_frames": len(inputs),
            "encoder": {k: percentiles(v[warm]) for k, v in times.items()}, "int8_over_default": ratio,
            "relative_error_vs_f32": errors, "contract": dataclasses.asdict(agreement),
            "contract_holds": agreement.holds, "adopt": bool(ratio < SPEEDUP_TO_ADOPT and agreement.holds),
            "isa": cpu_info().isa}


def parser():
    p = scenario_parser("int8", __doc__)
    p.add_argument("--calls", type=int, default=10, help="encoder calls of each, alternated")
    p.set_quick(image_size=128, calls=3)
    return p


def main(argv=None) -> dict:
    import tempfile

    p = parser()
    args = p.parse_args(argv)
    out = outputs(p, args.out or f"bench-results/int8-{args.image_size}.json")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="samtrack-int8-") as work:
        args.work = work
        r = run(args, Progress("int8"))
    data = {"benchmark": "int8", "settings": {k: getattr(args, k) for k in ("model", "image_size", "calls")},
            "environment": environment(args.threads, "cpu"), **r}
    write_json(out, data)
    print(table([[name, r["encoder"][name]["p50_ms"], " ".join(f"{e:.4f}" for e in r["relative_error_vs_f32"][name])]
                 for name in ("default", "int8")],
                [f"encoder ({r['isa']}, default {r['default_precision']})", "p50 ms", "relative error vs f32"]))
    c = r["contract"]
    print(f"int8 / default: {r['int8_over_default']:.3f}x; contract: mean IoU {c['mean_iou']:.4f} (>= "
          f"{contract.MEAN_IOU}), min {c['min_iou']:.4f}, agreement {c['agreement']:.3f} (>= {contract.AGREEMENT}); "
          f"adopt on this CPU: {'yes' if r['adopt'] else 'no'} (quantized in {r['quantize_s']:.0f} s)")
    print(f"wrote {out}")
    return data


if __name__ == "__main__":
    main()
