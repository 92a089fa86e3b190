"""The streaming tracker: frames one at a time in, per-object results out, prompts at any recent frame."""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

from engines.base import Engines

from .bank import FrameFeatures, MemoryEntry, ObjectBank, PointPrompt
from .clock import Mark, Span, StageClock
from .memory import condition_on_memory, gather_memory
from .options import TrackerOptions, usable_hole_area
from .precision import compute_context, resolve_precision, use_ieee_fp32
from .preprocess import DevicePreprocessor, Preprocessor, check_frame
from .prompting import Prompting
from .results import FrameResult, StageTimes, make_result
from .state import ObjectState, TrackerState, fitted


class Tracker(Prompting):
    """Streaming SAM2: `step(frame)` per frame; `add_points` / `add_box` / `add_mask` at any frame
    in the feature window. Bit-exact to Meta's SAM2VideoPredictor in fp32 on causal sessions,
    with memory bounded by the options (see TrackerOptions)."""

    def __init__(self, model: torch.nn.Module, options: TrackerOptions, engines: Engines | None = None):
        self.model = model
        self.options = options
        # Backends (engines/) chosen by whoever builds the tracker; Meta's own modules by default.
        self.engines = engines or Engines.of(model)
        self.encoder, self.memory_attention = self.engines.encoder, self.engines.memory_attention
        self.device = model.device
        self.image_size = int(model.image_size)
        self.precision = resolve_precision(options.precision, self.device)  # "fp32" (exact) or "bf16"
        use_ieee_fp32(self.precision, self.device)
        exact = self.precision == "fp32"
        self._preprocess = (Preprocessor if exact else DevicePreprocessor)(self.image_size, self.device)
        self._fill_hole_area = usable_hole_area(options.fill_hole_area)
        self._window: OrderedDict[int, FrameFeatures] = OrderedDict()
        self._banks: dict[int, ObjectBank] = {}
        self._latest = -1  # position of the newest model frame on the model's timeline (core/timeline.py)
        self._latest_number = -1  # its frame number
        self.retracked_frames = 0  # frames re-tracked for prompts on past frames, in total
        # Constants per resolution, computed once: the top-level position encoding of the image
        # and the memory position encoding (Meta recomputes both every frame, with equal values).
        self._vision_pos: torch.Tensor | None = None
        self._maskmem_pos: torch.Tensor | None = None
        self.state_version = 0  # counts changes of what snapshot() keeps (objects, conditioning frames)
        self.clock = StageClock(self.device)  # stage timings, on the device's timeline
        # Spans of the current step per stage ("track": memory attention and SAM heads, "memory_encoder");
        # None outside a step (prompts are not timed).
        self._spans: dict[str, list[Span]] | None = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build(cls, model: str = "sam2.1_hiera_t", checkpoint: str | os.PathLike | None = None, image_size: int = 1024,
              device: str = "cpu", seed: int = 0, threads: int | None = None, backend: str = "auto",
              engine_cache: str | os.PathLike | None = None, **options) -> Tracker:
        """Build Meta's model (checkpoint or seeded random weights) with the named backend and wrap it.

        backend: auto (OpenVINO on CPUs unless precision is fp32, torch on GPUs; tracker/build.py), torch, openvino,
        onnxruntime or tensorrt (engines/), compiled artefacts cached in engine_cache. Other options as in
        TrackerOptions."""
        from ..build import build_parts

        net, engines = build_parts(model, checkpoint, image_size, device, seed, threads, backend, engine_cache,
                                   options.get("precision", "auto"))
        return cls(net, TrackerOptions.from_model(net, **options), engines)

    def share(self, **options) -> Tracker:
        """Another tracker on this one's model and backends (one copy of the weights and engines), with
        state of its own: a daemon's second stream. Options default to the model's, as in `build`."""
        return Tracker(self.model, TrackerOptions.from_model(self.model, **options), self.engines)

    @classmethod
    def from_sam2(cls, model: torch.nn.Module, backend: str = "auto", engine_cache: str | os.PathLike | None = None,
                  **options) -> Tracker:
        """Wrap an already-built sam2 model (e.g. the one inside Meta's predictor), honouring its settings; backend
        as in `build` (precision="fp32" with backend auto: Meta's modules, bit-exact)."""
        from ..build import engines_for

        opts = TrackerOptions.from_model(model, **options)  # checked before any engine is built
        return cls(model, opts, engines_for(model, backend, engine_cache, opts.precision))

    # ---- public API ---------------------------------------------------------------------
    @property
    def objects(self) -> list[int]:
        """Ids of the tracked objects, in the order they were added."""
        return list(self._banks)

    @property
    def backend(self) -> str:
        """The engines' backend ("torch": Meta's modules)."""
        return self.engines.name

    @property
    def latest_frame(self) -> int | None:
        """Number of the last frame the model ran on (None before the first)."""
        return self._latest_number if self._latest >= 0 else None

    @property
    def window(self) -> list[int]:
        """Numbers of the frames a prompt may name now (the model's recent frames), oldest first."""
        return [f.number for f in self._window.values()]

    @torch.inference_mode()
    def step(self, frame: np.ndarray, number: int | None = None) -> FrameResult:
        """Track every object on the next frame (HxWx3 uint8 RGB). `number`: the frame's number in its stream
        (default: one more than the last); numbers skipped are frames answered elsewhere (by motion), which the
        model's timeline does not count."""
        frame = check_frame(frame)
        number = self._next_number(number)
        t0 = self.clock.mark()
        image = self.preprocess(frame)
        t1 = self.clock.mark()
        with compute_context(self.precision, self.device):
            backbone_out = self.encoder(image)
        return self.step_encoded(frame, backbone_out, Span(t0, t1), Span(t1, self.clock.mark()), number)

    def preprocess(self, frame: np.ndarray) -> torch.Tensor:
        """A checked frame as the image encoder's input, [1, 3, S, S] on the device."""
        return self._preprocess(frame)

    @torch.inference_mode()
    def step_encoded(self, frame: np.ndarray, backbone_out: dict, preprocess: Span, encoder: Span,
                     number: int | None = None) -> FrameResult:
        """`step` for a frame whose image encoder output is given (computed in a batch with other frames,
        see core.batch); the spans (this tracker's clock's marks) of what was done outside."""
        number = self._next_number(number)
        clock = self.clock
        t2 = clock.mark()
        self._spans = spans = {"track": [], "memory_encoder": []}
        try:
            with compute_context(self.precision, self.device):
                feats = self._encode(backbone_out, frame.shape[0], frame.shape[1], self._latest + 1, number)
                for bank in self._banks.values():
                    self._flush(bank)
                low_res = {}
                banks = list(self._banks.values())
                entries = self._track_objects(banks, feats, is_init_cond=False, run_mem_encoder=True) if banks else []
                self._push(feats)  # only now: a failure above leaves the frame untaken (its number too)
                for bank, entry in zip(banks, entries):
                    bank.non_cond[feats.index] = entry
                    bank.tracked.add(feats.index)
                    bank.prune(self._oldest_kept(), self.options.max_cond_frames)
                    low_res[bank.obj_id] = (entry.pred_masks, entry.object_score_logits)
            t3 = clock.mark()
            result = make_result(feats.number, low_res, feats.height, feats.width)
            t4 = clock.mark()
        finally:
            self._spans = None
        clock.settle(t4)  # on CUDA, the step's one wait for the device's marks
        track, mem = clock.total(spans["track"]), clock.total(spans["memory_encoder"])
        times = StageTimes(clock.seconds(preprocess), clock.seconds(encoder), track, mem,
                           clock.seconds(Span(t2, t3)) - track - mem, clock.seconds(Span(t3, t4)))
        return dataclasses.replace(result, times=times)

    def snapshot(self) -> TrackerState:
        """What a restart needs to go on tracking (core/state.py): the frame counter and every object's
        conditioning memories, prompts not yet in memory encoded now as the next step would encode them."""
        objects = []
        with torch.inference_mode(), compute_context(self.precision, self.device):
            for bank in self._banks.values():
                self._encode_pending(bank.pending_cond)
                objects.append(ObjectState(bank.obj_id, {**bank.cond, **bank.pending_cond}, bank.cond_dropped))
        return TrackerState(self._latest_number + 1, tuple(objects), self._maskmem_pos, self._latest + 1)

    def restore(self, state: TrackerState, next_frame: int | None = None) -> None:
        """Go on from a snapshot: its objects with their conditioning memories, frame numbers from next_frame
        (default: the state's); everything else is forgotten and no frame before can be prompted. The model's
        timeline moves on as far as the numbering does (numbers skipped count as time passed)."""
        state = fitted(state, self.model, self.options.max_objects, self.precision)
        start = max(state.next_frame, next_frame or 0)
        self._window.clear()
        self._banks = {o.obj_id: ObjectBank(o.obj_id, cond=dict(o.cond), cond_dropped=o.cond_dropped)
                       for o in state.objects}
        self._latest = state.position + (start - state.next_frame) - 1
        self._latest_number = start - 1
        self._maskmem_pos = state.maskmem_pos
        self.state_version += 1

    def result(self, frame_index: int | None = None) -> FrameResult:
        """Every object's current result on a frame still in the window (default: the latest)."""
        feats = self._prompt_frame(frame_index)
        return self._result(feats)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the tracker holds per frame or per object (for accounting and tests)."""
        out = [t for f in self._window.values() for t in f.tensors()]
        out += [t for b in self._banks.values() for t in b.tensors()]
        return out + [t for t in (self._vision_pos, self._maskmem_pos) if t is not None]

    def held_bytes(self) -> int:
        """Bytes of the tensors in `tensors()`, counting shared storage once."""
        seen, total = set(), 0
        for t in self.tensors():
            s = t.untyped_storage()
            if s.data_ptr() not in seen:
                seen.add(s.data_ptr())
                total += s.nbytes()
        return total

    # ---- internals ----------------------------------------------------------------------
    def _encode(self, backbone_out: dict, height: int, width: int, index: int, number: int) -> FrameFeatures:
        _, feats, pos, sizes = self.model._prepare_backbone_features(backbone_out)
        if self._vision_pos is None:
            self._vision_pos = pos[-1].clone()
        position = torch.full((), index, dtype=torch.int64, device=self.device)
        return FrameFeatures(index, number, position, height, width, feats, sizes)

    def _next_number(self, number: int | None) -> int:
        """The number of a new model frame: the given one (after the last), or one more than the last."""
        if number is None:
            return self._latest_number + 1
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number <= self._latest_number:
            raise ValueError(f"frame number {number!r} after frame {self._latest_number}: numbers increase")
        return int(number)

    def _push(self, feats: FrameFeatures) -> None:
        self._window[feats.index] = feats
        self._latest, self._latest_number = feats.index, feats.number
        while len(self._window) > self.options.feature_window:
            self._window.popitem(last=False)

    def _span_text(self) -> str:
        w = self.window
        return f"[{w[0]}, {w[-1]}]" if w else "(empty)"

    def _oldest_kept(self) -> int:
        """Oldest frame whose memory a frame in the window may still read (catch-up included)."""
        return self._latest - (self.options.feature_window - 1) - self.options.memory_horizon

    def _flush(self, bank: ObjectBank) -> None:
        """Encode the memory of prompted frames (Meta's propagate preflight) and move them into memory."""
        for pending in (bank.pending_non_cond, bank.pending_cond):
            self._encode_pending(pending)
        bank.flush_pending()

    def _encode_pending(self, pending: dict[int, MemoryEntry]) -> None:
        for t, e in pending.items():
            if e.maskmem_features is None:
                feats = self._window[t]
                high_res = F.interpolate(e.pred_masks, size=(self.image_size,) * 2, mode="bilinear",
                                         align_corners=False)
                e.maskmem_features = self._encode_memory(feats.vision_feats, feats.feat_sizes, high_res,
                                                         e.object_score_logits, from_pts=True)

    def _mark(self) -> Mark | None:
        """A mark for a stage inside the current step; None outside a step."""
        return self.clock.mark() if self._spans is not None else None

    def _charge(self, stage: str, start: Mark | None) -> None:
        """Charge the time since `start` (from `_mark`) to a stage of the current step."""
        if start is not None and self._spans is not None:
            self._spans[stage].append(Span(start, self.clock.mark()))

    def _encode_memory(self, vision_feats: list[torch.Tensor], feat_sizes, high_res_masks, object_score_logits,
                       from_pts: bool):
        start = self._mark()
        maskmem, pos = self.engines.memory_encoder(
            current_vision_feats=vision_feats, feat_sizes=feat_sizes,
            pred_masks_high_res=high_res_masks, object_score_logits=object_score_logits,
            is_mask_from_pts=from_pts,
        )
        if self._maskmem_pos is None:
            self._maskmem_pos = pos[-1][0:1].clone()
        maskmem = maskmem.to(torch.bfloat16)
        self._charge("memory_encoder", start)
        return maskmem

    def _track(self, bank: ObjectBank, feats: FrameFeatures, is_init_cond: bool,
               prompt: PointPrompt | None = None, mask: torch.Tensor | None = None,
               prev_logits: torch.Tensor | None = None, run_mem_encoder: bool = True) -> MemoryEntry:
        """One object on one frame: Meta's track_step reading the bounded bank."""
        return self._track_objects([bank], feats, is_init_cond, prompt, mask, prev_logits, run_mem_encoder)[0]

    def _track_objects(self, banks: list[ObjectBank], feats: FrameFeatures, is_init_cond: bool,
                       prompt: PointPrompt | None = None, mask: torch.Tensor | None = None,
                       prev_logits: torch.Tensor | None = None, run_mem_encoder: bool = True) -> list[MemoryEntry]:
        """Objects on one frame, in one batch (prompts only come one object at a time)."""
        if len(banks) > 1 and not self.options.batch_objects:
            return [self._track(b, feats, is_init_cond, run_mem_encoder=run_mem_encoder) for b in banks]
        m, vf, sizes, n = self.model, feats.vision_feats, feats.feat_sizes, len(banks)
        high_res_feats = [x.permute(1, 2, 0).view(x.size(1), x.size(2), *s).expand(n, -1, -1, -1)
                          for x, s in zip(vf[:-1], sizes[:-1])] or None
        point_inputs = prompt.as_inputs() if prompt is not None else None
        if mask is not None and m.use_mask_input_as_output_without_sam:
            pix_feat = vf[-1].permute(1, 2, 0).view(-1, m.hidden_dim, *sizes[-1])
            outs = m._use_mask_as_output(pix_feat, high_res_feats, mask)
        else:
            memories = [gather_memory(m, self.options, b, feats.index, is_init_cond, self._maskmem_pos) for b in banks]
            start = self._mark()
            pix_feat = condition_on_memory(m, self.options, self.memory_attention, vf[-1], self._vision_pos,
                                           sizes[-1], memories)
            outs = self.engines.heads(
                backbone_features=pix_feat, point_inputs=point_inputs,
                mask_inputs=prev_logits if prev_logits is not None else mask,
                high_res_features=high_res_feats,
                multimask_output=m._use_multimask(is_init_cond, point_inputs),
            )
            self._charge("track", start)
        _, _, _, low_res, high_res, obj_ptr, score = outs
        maskmem = None
        if run_mem_encoder and self.options.num_maskmem > 0:
            batch_feats = [x.expand(-1, n, -1) for x in vf]
            maskmem = self._encode_memory(batch_feats, sizes, high_res, score, from_pts=point_inputs is not None)
        if self._fill_hole_area > 0:
            from sam2.utils.misc import fill_holes_in_mask_scores

            low_res = fill_holes_in_mask_scores(low_res, self._fill_hole_area)
        if n == 1:
            return [MemoryEntry(feats.index, feats.index_tensor, low_res, obj_ptr, score, maskmem)]
        # Each object keeps its own copy, so its memory is freed with it, not with the whole batch.
        return [MemoryEntry(feats.index, feats.index_tensor, low_res[i:i + 1].clone(), obj_ptr[i:i + 1].clone(),
                            score[i:i + 1].clone(), None if maskmem is None else maskmem[i:i + 1].clone())
                for i in range(n)]

    def _result(self, feats: FrameFeatures) -> FrameResult:
        low_res = {}
        for obj_id, bank in self._banks.items():
            e = bank.entry(feats.index)
            if e is not None:
                low_res[obj_id] = (e.pred_masks, e.object_score_logits)
        return make_result(feats.number, low_res, feats.height, feats.width)
