"""Building Meta's SAM2 / SAM2.1 models from a checkpoint in Meta's format or seeded random weights."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path

import torch

from ..devices import check_device
from ..errors import CheckpointError, ImageSizeError
from .registry import ModelSpec, image_size_problem, model_spec

log = logging.getLogger(__name__)


def build_sam2_model(
    model: str = "sam2.1_hiera_t",
    checkpoint: str | os.PathLike | None = None,
    image_size: int = 1024,
    device: str | torch.device = "cpu",
    seed: int = 0,
    threads: int | None = None,
) -> torch.nn.Module:
    """Build Meta's video model (the SAM2VideoPredictor module) from a checkpoint or seeded random weights.

    The model is built exactly as `sam2.build_sam.build_sam2_video_predictor` builds it, so its
    settings (binarized click masks in memory, dynamic multimask) match Meta's video predictor.
    """
    from sam2.build_sam import build_sam2_video_predictor

    dev = check_device(device)
    spec = model_spec(model)
    if (problem := image_size_problem(image_size)) is not None:
        raise ImageSizeError(problem)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    state_dict = load_checkpoint(checkpoint) if checkpoint is not None else None
    torch.manual_seed(seed)  # random init is deterministic per seed (weights are replaced by a checkpoint)
    # sam2 puts caches on "cuda", the current device: make that the chosen GPU, so cuda:1 leaves GPU 0 alone.
    with torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext():
        net = build_sam2_video_predictor(
            spec.config, ckpt_path=None, device="cpu",
            hydra_overrides_extra=[f"++model.image_size={image_size}"],
        )
    if state_dict is not None:
        _check_state_dict(net, state_dict, checkpoint, spec)
        net.load_state_dict(state_dict)
    net = net.to(dev).eval()
    place_position_caches(net)
    return net


def place_position_caches(net: torch.nn.Module) -> None:
    """Put sam2's position caches where the model is. sam2 warms its sine position-encoding caches and builds
    its RoPE frequencies on "cuda" whenever CUDA is available (position_encoding.py, sam/transformer.py),
    whatever device the model goes to; its forward would then copy them to the model's device every frame.
    The sine caches are emptied (sam2 refills them on the inputs' device, computed there as on a host without
    a GPU); the RoPE frequencies, computed on the CPU by sam2, are computed again and moved once."""
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention

    device = next(net.parameters()).device
    for m in net.modules():
        if isinstance(m, PositionEmbeddingSine):
            m.cache = {}
        elif isinstance(m, RoPEAttention):
            side = math.isqrt(m.freqs_cis.shape[0])  # sam2's grids are square (its forward assumes so too)
            square = side * side == m.freqs_cis.shape[0]
            m.freqs_cis = (m.compute_cis(end_x=side, end_y=side) if square else m.freqs_cis).to(device)


def seeded_model(name: str = "sam2.1_hiera_t", image_size: int = 1024, seed: int = 0, present: bool = True,
                 device: str | torch.device = "cpu") -> torch.nn.Module:
    """Seeded random weights for tests and benchmarks, objects forced present when asked.

    Random weights mostly give object scores <= 0 (every mask "absent"); raising the score head's
    bias makes objects present, so every memory path of a present object runs. Hole filling is off
    (no CUDA extension here: Meta would warn per frame and skip it).
    """
    model = build_sam2_model(name, image_size=image_size, device=device, seed=seed)
    model.fill_hole_area = 0
    if present:
        with torch.no_grad():
            model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(5.0)
    return model


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state_dict inside a checkpoint in Meta's format ({"model": state_dict})."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(
            f"checkpoint file not found: {p}. Download one with `samtrack weights download NAME` "
            f"(see `samtrack weights list`) or pass the path of a file you have."
        )
    if not p.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for a file that is not a checkpoint
        raise CheckpointError(
            f"{p} is not a readable PyTorch checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            f"Is the download complete? Re-download it with `samtrack weights download NAME`."
        ) from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt["model"], dict):
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{p} is not in Meta's SAM2 checkpoint format: expected a dict with a 'model' state_dict, "
            f"found {keys}"
        )
    return ckpt["model"]


def _check_state_dict(net: torch.nn.Module, sd: dict, path, spec: ModelSpec, show: int = 5) -> None:
    """Raise CheckpointError naming the keys and shapes that disagree with the model."""
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches, e.g. " + "; ".join(shapes[:show]))
    if missing:
        parts.append(f"{len(missing)} keys missing from the checkpoint, e.g. {missing[:show]}")
    if unexpected:
        parts.append(f"{len(unexpected)} keys the model does not have, e.g. {unexpected[:show]}")
    hint = _guess_model(sd)
    raise CheckpointError(
        f"checkpoint {path} does not fit model {spec.name}: " + "; ".join(parts)
        + (f". It looks like a {hint} checkpoint: pass the matching model name." if hint else "")
    )


def _guess_model(sd: dict) -> str | None:
    """Name the model size a state_dict probably belongs to, from its trunk width and depth."""
    w = sd.get("image_encoder.trunk.patch_embed.proj.weight")
    if w is None:
        return None
    depth = 1 + max(
        (int(k.split(".")[3]) for k in sd if k.startswith("image_encoder.trunk.blocks.")), default=-1
    )
    version = "sam2.1" if "no_obj_embed_spatial" in sd else "sam2"
    size = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}.get((int(w.shape[0]), depth))
    return f"{version}_hiera_{size}" if size else None
