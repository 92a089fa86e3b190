"""OpenVINO, the CPU's compiled engine: the image encoder, the memory attention and a tracked frame's SAM heads
and memory encoder as compiled models, bf16 where the CPU computes it natively and f32 elsewhere. Each graph is
converted from Meta's modules once per weights, size and version into the artefact cache (OpenVINO IR, verified
like every artefact); OpenVINO keeps the compiled code in its own cache beside it (a directory per IR, each blob
verified by its digest before OpenVINO loads it), so a warm start is seconds.
Calls a graph does not cover (a prompted frame's heads, a prompt's memory) go to Meta's modules."""

from __future__ import annotations

import functools
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import PARTS, Sam2Model, image_size_of, position_encodings
from .cache import ArtefactCache, ArtefactKey, drop_unverified, locked, record_digests, weights_digest
from .export import EncoderGraph, fixed_pos_embed
from .graphs import TrackedMemoryGraph, TrackingHeadsGraph
from .memory_graph import MemoryAttentionGraph
from .onnxruntime_backend import onnx_key

log = logging.getLogger(__name__)

# OpenVINO's latency mode: one request at a time, all its threads on it (a tracker's calls come one by one).
PERFORMANCE_HINT = "LATENCY"
# How long one wait for a running request lasts before Python may run a signal handler: short next to a stop's
# budget, long next to the cost of one more wait call.
WAIT_SLICE_MS = 50


def openvino_available() -> str | None:
    """None when OpenVINO can run here, else why not."""
    try:
        import_openvino()
    except ImportError:
        return "the openvino package is not installed (pip install openvino)"
    return None


def cpu_precision() -> str:
    """"bf16" where OpenVINO's CPU plugin computes bf16 natively (AMX, AVX512-BF16), else "f32"."""
    ov = import_openvino()

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in caps else "f32"


@dataclass(frozen=True)
class _Part:
    """One graph: its name, what it is called in the cache, the module to trace, example inputs, dynamic axes,
    the digest of the weights it holds."""

    part: str
    kind: str
    what: str
    graph: torch.nn.Module
    example: tuple[torch.Tensor, ...]
    shapes: list[list[int]] | None  # per input, -1 where the size varies (None: all as in the example)
    weights: str


def _parts(model: Sam2Model, wanted: tuple[str, ...]) -> list[_Part]:
    """The wanted parts (their weights digests are computed only for those)."""
    s = image_size_of(model)
    h, c, m = s // 16, model.hidden_dim, model.mem_dim
    hw = h * h
    z = torch.zeros
    full = functools.cache(lambda: weights_digest({"model": model}))
    make = {
        "encoder": lambda: _Part("encoder", "ov-encoder", "image encoder", EncoderGraph(model).eval(),
                                 (z(1, 3, s, s),), None, onnx_key(model, s).weights),
        "memory_attention": lambda: _Part(
            "memory_attention", "ov-memory", "memory attention", MemoryAttentionGraph(model, s).eval(),
            (z(hw, 1, c), z(hw, 1, c), z(2 * hw, 1, m), z(2 * hw, 1, m), z(8, 1, m), z(8, 1, m)),
            [[hw, -1, c], [hw, -1, c], [-1, -1, m], [-1, -1, m], [-1, -1, m], [-1, -1, m]],
            onnx_key(model, s, "onnx-memory").weights),
        # The heads and the memory encoder read weights across the model: keyed by all of them.
        "heads": lambda: _Part("heads", "ov-heads", "SAM heads", TrackingHeadsGraph(model).eval(),
                               (z(1, c, h, h), z(1, c // 8, 4 * h, 4 * h), z(1, c // 4, 2 * h, 2 * h)),
                               [[-1, c, h, h], [-1, c // 8, 4 * h, 4 * h], [-1, c // 4, 2 * h, 2 * h]],
                               full()),
        "memory_encoder": lambda: _Part("memory_encoder", "ov-memory-encoder", "memory encoder",
                                        TrackedMemoryGraph(model, (h, h)).eval(),
                                        (z(hw, 1, c), z(1, 1, s, s), z(1, 1)), [[hw, -1, c], [-1, 1, s, s], [-1, 1]],
                                        full()),
    }
    return [make[name]() for name in PARTS if name in wanted]


def convert(graph: torch.nn.Module, example: tuple[torch.Tensor, ...], shapes: list[list[int]] | None) -> Any:
    """The OpenVINO model of a traced torch module (shapes: per input, -1 where the size varies)."""
    ov = import_openvino()

    inputs = None if shapes is None else [(shape, ov.Type.f32) for shape in shapes]
    with torch.no_grad(), warnings.catch_warnings():
        # OpenVINO traces with TorchScript (deprecated by torch, still what its converter reads); the tracer
        # warns about Python conditionals on shapes, which are constants for one graph of one size.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return ov.convert_model(graph, example_input=example, input=inputs)


def import_openvino() -> Any:
    """The openvino module, without its telemetry: on import and on every conversion OpenVINO's converter reports
    to an analytics service unless the user opted out, from a process it forks out of a thread while the
    conversion's thread pools run (that fork aborted a test process here). With openvino_telemetry unimportable
    OpenVINO uses its own no-op stub; samtrack sends nothing."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # None: the import raises
    import openvino

    return openvino


def convert_cached(model: Sam2Model, part: _Part, cache: ArtefactCache) -> Path:
    """The part's OpenVINO IR (.xml, its weights in the .bin beside it) from the cache, converted on a miss."""
    ov = import_openvino()

    size = image_size_of(model)

    def build(path: Path) -> Path:
        log.info("converting the %s to OpenVINO at %d px (once per weights, size and version)...", part.what, size)
        t0 = time.monotonic()
        with fixed_pos_embed(model, size):
            converted = convert(part.graph, part.example, part.shapes)
        tmp = path.with_name(path.stem + ".tmp.xml")
        ov.save_model(converted, str(tmp), compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
        tmp.replace(path)
        log.info("converted the %s in %.1f s", part.what, time.monotonic() - t0)
        return path

    key = ArtefactKey(part.kind, part.weights, f"{type(model).__name__}:{part.graph.__class__.__name__}", size, "f32",
                      f"openvino-{ov.__version__}/torch-{torch.__version__}", "cpu")
    return cache.get_or_build(key, "xml", build, companions=(".bin",))


class _Compiled:
    """A compiled model and its one inference request: torch tensors in, fresh torch tensors out (OpenVINO
    reuses its output buffers on the next call). A call can be interrupted: an exception raised in the main
    thread while it runs (the daemon's signal handler on SIGTERM) cancels the request and propagates."""

    def __init__(self, compiled: Any):
        self.request = compiled.create_infer_request()
        self.outputs = list(compiled.outputs)

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        try:
            self.request.start_async([x.detach().float().contiguous().numpy() for x in inputs])
            # Python runs signal handlers only between bytecodes: a blocking infer() of seconds (the encoder at
            # 1024 px) would defer a stop until it returned; waiting in short slices lets the handler run.
            while not self.request.wait_for(WAIT_SLICE_MS):
                pass
        except BaseException:
            self.request.cancel()  # harmless on a request that is not running (a signal during start_async)
            try:
                self.request.wait()  # the request must be idle before it is freed or started again
            except RuntimeError:
                pass  # OpenVINO reports the cancellation as an error: it is the one asked for
            raise
        return [torch.from_numpy(np.array(self.request.get_tensor(o).data, copy=True)) for o in self.outputs]


@dataclass
class OpenVINOEngines:
    """The compiled parts (None: not asked for), each a drop-in for Meta's call it replaces (engines.base)."""

    encoder: OVEncoder | None
    memory_attention: OVMemoryAttention | None
    heads: OVHeads | None
    memory_encoder: OVMemoryEncoder | None
    precision: str  # "bf16" or "f32": what OpenVINO computes in

    @classmethod
    def for_model(cls, model: Sam2Model, cache_dir: Path | None = None, threads: int | None = None,
                  precision: str | None = None, parts: tuple[str, ...] = PARTS) -> OpenVINOEngines:
        """parts: which to convert and compile ("encoder", "memory_attention", "heads", "memory_encoder")."""
        ov = import_openvino()
        if model.device.type != "cpu":
            raise ValueError(f"the openvino backend runs on the CPU; the model is on {model.device}")
        cache = ArtefactCache(cache_dir)
        precision = precision or cpu_precision()
        core = ov.Core()
        compiled = cache.directory / "openvino-compiled"
        config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "PERFORMANCE_HINT": PERFORMANCE_HINT,
                  "INFERENCE_PRECISION_HINT": precision}
        irs = {p.part: convert_cached(model, p, cache) for p in _parts(model, parts)}
        # OpenVINO writes its compiled blobs in place and maps them when it loads them: one process at a time
        with locked(compiled.with_name(compiled.name + ".lock")):
            run = {part: _Compiled(_compile_verified(core, ir, compiled / ir.stem, config)) for part, ir in irs.items()}
        s = image_size_of(model)
        return cls(OVEncoder(run["encoder"], position_encodings(model, s)) if "encoder" in run else None,
                   OVMemoryAttention(run["memory_attention"], model.memory_attention)
                   if "memory_attention" in run else None,
                   OVHeads(run["heads"], model, TrackingHeadsGraph(model).multimask) if "heads" in run else None,
                   OVMemoryEncoder(run["memory_encoder"], model, _memory_pos(model, s))
                   if "memory_encoder" in run else None, precision)


def encoder_ir(model: Sam2Model, cache_dir: Path | None = None) -> Path:
    """The image encoder's OpenVINO IR (f32 weights) from the artefact cache, converted on a miss."""
    return convert_cached(model, _parts(model, ("encoder",))[0], ArtefactCache(cache_dir))


def compile_encoder(model: Sam2Model, ir: Path, threads: int | None = None, precision: str | None = None) -> OVEncoder:
    """An encoder IR of this model (e.g. a quantized copy of `encoder_ir`'s) compiled as the backend compiles its
    own, without the compiled-blob cache."""
    config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "PERFORMANCE_HINT": PERFORMANCE_HINT,
              "INFERENCE_PRECISION_HINT": precision or cpu_precision()}
    compiled = import_openvino().Core().compile_model(str(ir), "CPU", config)
    return OVEncoder(_Compiled(compiled), position_encodings(model, image_size_of(model)))


def _compile_verified(core: Any, ir: Path, blobs: Path, config: dict) -> Any:
    """The IR compiled for the CPU, OpenVINO's compiled blob of it (in a directory of its own) loaded only once its
    digest is verified: one changed in place is deleted and compiled again. Where the cache cannot be written
    (a bad blob that cannot be deleted), it is compiled without it."""
    try:
        blobs.mkdir(parents=True, exist_ok=True)
        if dropped := drop_unverified(blobs):
            log.warning("OpenVINO's compiled %s in %s did not match its digest: compiling it again", dropped, blobs)
    except OSError as e:
        log.warning("OpenVINO's compiled cache %s cannot be verified (%s): compiling %s without it", blobs, e,
                    ir.name)
        return core.compile_model(str(ir), "CPU", config)
    model = core.compile_model(str(ir), "CPU", {**config, "CACHE_DIR": str(blobs)})
    try:
        record_digests(blobs)
    except OSError as e:  # a read-only cache: the blob is verified against what was recorded before
        log.debug("digests of %s not recorded: %s", blobs, e)
    return model


class OVEncoder:
    name = "openvino"

    def __init__(self, run: _Compiled, pos_enc: list[torch.Tensor]):
        self.run, self.pos_enc = run, pos_enc

    def __call__(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        if image.shape[0] != 1:  # batched streams: one frame at a time through the fixed-size graph
            outs = [self(image[i:i + 1]) for i in range(image.shape[0])]
            return {"backbone_fpn": [torch.cat(x) for x in zip(*(o["backbone_fpn"] for o in outs), strict=True)],
                    "vision_pos_enc": [p.expand(image.shape[0], -1, -1, -1) for p in self.pos_enc]}
        return {"backbone_fpn": self.run(image), "vision_pos_enc": list(self.pos_enc)}


class OVMemoryAttention:
    """Meta's memory_attention call; a memory without object pointers (SAM2.1 always has them) goes to torch."""

    def __init__(self, run: _Compiled, module: torch.nn.Module):
        self.run, self.module = run, module

    def __call__(self, curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        if num_obj_ptr_tokens == 0:
            return self.module(curr=curr, curr_pos=curr_pos, memory=memory, memory_pos=memory_pos,
                               num_obj_ptr_tokens=0)
        n = memory.shape[0] - num_obj_ptr_tokens
        return self.run(curr[0], curr_pos[0], memory[:n], memory_pos[:n], memory[n:], memory_pos[n:])[0]


class OVHeads:
    """Meta's _forward_sam_heads for tracked frames (no prompt); prompted frames go to Meta's method."""

    def __init__(self, run: _Compiled, model: Sam2Model, multimask: bool):
        self.run, self.model, self.multimask = run, model, multimask

    def __call__(self, backbone_features, point_inputs=None, mask_inputs=None, high_res_features=None,
                 multimask_output=False):
        if point_inputs is not None or mask_inputs is not None or high_res_features is None \
                or multimask_output != self.multimask:
            return self.model._forward_sam_heads(backbone_features=backbone_features, point_inputs=point_inputs,
                                                 mask_inputs=mask_inputs, high_res_features=high_res_features,
                                                 multimask_output=multimask_output)
        low, high, ptr, score = self.run(backbone_features, *high_res_features)
        return None, None, None, low, high, ptr, score


class OVMemoryEncoder:
    """Meta's _encode_new_memory for a tracked frame's mask; a prompt's mask (binarized) goes to Meta's method."""

    def __init__(self, run: _Compiled, model: Sam2Model, pos: torch.Tensor):
        self.run, self.model, self.pos = run, model, pos

    def __call__(self, current_vision_feats, feat_sizes, pred_masks_high_res, object_score_logits,
                 is_mask_from_pts: bool):
        if is_mask_from_pts:
            return self.model._encode_new_memory(current_vision_feats=current_vision_feats, feat_sizes=feat_sizes,
                                                 pred_masks_high_res=pred_masks_high_res,
                                                 object_score_logits=object_score_logits,
                                                 is_mask_from_pts=True)
        features = self.run(current_vision_feats[-1], pred_masks_high_res, object_score_logits)[0]
        return features, [self.pos.expand(features.shape[0], -1, -1, -1)]


def _memory_pos(model: Sam2Model, size: int) -> torch.Tensor:
    """The memory's position encoding [1, mem_dim, S/16, S/16]: a constant per resolution."""
    h = size // 16
    with torch.inference_mode():
        return model.memory_encoder.position_encoding(torch.zeros(1, model.mem_dim, h, h)).clone()
