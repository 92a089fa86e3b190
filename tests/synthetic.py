"""Meta-format video folders for the reference predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_jpeg_folder(frames: list[np.ndarray], folder: Path) -> list[np.ndarray]:
    """Write frames as <index>.jpg (Meta's video folder layout); return the decoded pixels Meta will see."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg", quality=95)
    return [np.array(Image.open(folder / f"{i:05d}.jpg").convert("RGB")) for i in range(len(frames))]
