"""Tracker options: Meta's model settings that a streaming tracker reads, and samtrack's own bounds."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


# When the model attends to every conditioning frame (max_cond_frames_in_attn=-1, Meta's default),
# the bank still needs a cap to stay bounded. Each conditioning frame adds (image_size/16)^2 memory
# tokens, as much as a recent frame; 8 keeps worst-case memory attention about twice the steady state
# while covering every realistic number of prompted frames per object in a live session.
DEFAULT_MAX_COND_FRAMES = 8

# Frames whose backbone features stay cached so a prompt can name a frame the user saw: about
# half a second at 30 fps, the round trip from a viewer's click back to the daemon.
DEFAULT_FEATURE_WINDOW = 16

PRECISIONS = ("auto", "fp32", "bf16")  # see TrackerOptions.precision
# Engine backends a user may name (engines.base.BACKENDS, and auto: chosen for the device, tracker/build.py).
BACKEND_CHOICES = ("auto", "torch", "openvino", "onnxruntime", "tensorrt")

# Objects tracked at once: each adds its memory bank and its share of every step (about one memory attention
# and decoder pass), so a client adding ids in a loop would grow memory and step time without bound. 32 covers
# a busy scene on one camera; raise it where the hardware keeps up.
DEFAULT_MAX_OBJECTS = 32


@dataclass(frozen=True)
class TrackerOptions:
    """Settings of the streaming loop. `from_model` reads Meta's values from the model.

    Every field can be overridden by passing it to `Tracker.build` / `Tracker.from_sam2`.
    """

    # Memory frames per object: 1 conditioning slot + (num_maskmem - 1) recent frames (Meta: 7).
    num_maskmem: int
    # Recent memory frames are taken every r-th frame (plus the last one); Meta's eval default 1.
    memory_temporal_stride_for_eval: int
    # Object pointers attended per frame (Meta: 16), counting conditioning frames.
    max_obj_ptrs_in_encoder: int
    # Conditioning (prompted) frames attended and kept per object; the M most recent.
    max_cond_frames: int
    # Corrections on tracked frames become conditioning frames (Meta's default False: they age out).
    add_all_frames_to_correct_as_cond: bool
    # Fill holes up to this area in low-res masks (needs sam2's CUDA extension; 0 disables).
    fill_hole_area: int
    # Frames whose features are cached so prompts can name a recent frame and re-track from it.
    feature_window: int = DEFAULT_FEATURE_WINDOW
    # Track all objects of a frame in one batch (memory attention per group of equally long memories,
    # SAM heads and memory encoder together): fewer, larger kernels for GPUs. Off by default: Meta runs
    # one object at a time, batching changes float rounding (within 1e-5), and on a CPU the memory
    # attention is compute-bound, so batching it was measured slower (docs/benchmarks.md).
    batch_objects: bool = False
    # Arithmetic: "fp32" is Meta's (bit-exact); "bf16" runs the model under bf16 autocast with the frame
    # resized on the device (within the tolerance of docs/engines.md); "auto" picks bf16 where the device
    # has native bf16 (CUDA, CPUs with AVX512-BF16 or AMX), else fp32.
    precision: str = "auto"
    # New object ids beyond this many tracked objects are refused (TooManyObjectsError); see DEFAULT_MAX_OBJECTS.
    max_objects: int = DEFAULT_MAX_OBJECTS

    @classmethod
    def from_model(cls, model: torch.nn.Module, **overrides) -> TrackerOptions:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown tracker options {sorted(unknown)}; known: {cls.names()}")
        cap = model.max_cond_frames_in_attn
        opts = cls(
            num_maskmem=model.num_maskmem,
            memory_temporal_stride_for_eval=model.memory_temporal_stride_for_eval,
            max_obj_ptrs_in_encoder=model.max_obj_ptrs_in_encoder,
            max_cond_frames=cap if cap > 0 else DEFAULT_MAX_COND_FRAMES,
            add_all_frames_to_correct_as_cond=getattr(model, "add_all_frames_to_correct_as_cond", False),
            fill_hole_area=getattr(model, "fill_hole_area", 0),
        )
        opts = dataclasses.replace(opts, **overrides)
        opts.validate(model)
        return opts

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def validate(self, model: torch.nn.Module) -> None:
        n_tpos = model.maskmem_tpos_enc.shape[0]
        if not 1 <= self.num_maskmem <= n_tpos:
            raise ValueError(f"num_maskmem must be in 1..{n_tpos} (the model's temporal encodings)")
        if self.memory_temporal_stride_for_eval < 1:
            raise ValueError("memory_temporal_stride_for_eval must be >= 1")
        if self.max_obj_ptrs_in_encoder < 2:
            raise ValueError("max_obj_ptrs_in_encoder must be >= 2")
        if self.max_cond_frames < 2:
            raise ValueError("max_cond_frames must be >= 2 (Meta's selection keeps the closest 2+)")
        if self.feature_window < 1:
            raise ValueError("feature_window must be >= 1")
        if self.fill_hole_area < 0:
            raise ValueError("fill_hole_area must be >= 0")
        if self.max_objects < 1:
            raise ValueError("max_objects must be >= 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    @property
    def memory_horizon(self) -> int:
        """How many frames back a tracked frame reads memory: pointers and strided recent frames."""
        return max(self.max_obj_ptrs_in_encoder - 1, 1 + self.memory_temporal_stride_for_eval * (self.num_maskmem - 2))


def usable_hole_area(area: int) -> int:
    """The hole-filling area to apply: 0 when sam2's CUDA extension is missing (Meta then skips it too)."""
    if area <= 0:
        return 0
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        log.info("sam2 CUDA extension not built: mask hole filling (fill_hole_area=%d) is off", area)
        return 0
    return area
