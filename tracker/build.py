"""Choosing what a Tracker runs on: Meta's model from a checkpoint (or seeded random weights) and the
engine backends named by the caller. Lives beside the core so the core never picks a backend itself."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from engines.base import EncoderBackend, MemoryAttentionBackend
from engines.factory import check_backend_device, make_encoder, make_memory_attention

from .devices import check_device
from .errors import DeviceError
from .models import build_sam2_model

log = logging.getLogger(__name__)


def build_parts(model: str, checkpoint: str | os.PathLike | None, image_size: int, device: str, seed: int,
                threads: int | None, backend: str, engine_cache: str | os.PathLike | None,
                ) -> tuple[torch.nn.Module, EncoderBackend, MemoryAttentionBackend]:
    """The sam2 model, its image encoder and its memory attention for `backend`. The device, and the backend on
    it, are checked first: DeviceError says what to install or pass before any model is loaded."""
    check_device(device)
    try:
        check_backend_device(backend, device)
    except ValueError as e:
        raise DeviceError(str(e)) from None
    if checkpoint is None:
        log.warning("no checkpoint given: %s has seeded RANDOM weights, its masks are meaningless", model)
    net = build_sam2_model(model, checkpoint, image_size, device, seed, threads)
    cache = Path(engine_cache) if engine_cache else None
    return net, make_encoder(backend, net, cache_dir=cache), make_memory_attention(backend, net, cache)
