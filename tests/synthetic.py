"""Synthetic test videos: textured background with moving coloured shapes, saved as Meta's JPEG folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_frames(n: int, height: int = 96, width: int = 120, seed: int = 0) -> list[np.ndarray]:
    """n RGB frames: a noisy background, a red box moving right-down, a blue disc moving left."""
    rng = np.random.default_rng(seed)
    bg = (rng.integers(0, 60, (height, width, 3)) + np.linspace(0, 120, width)[None, :, None]).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(n):
        f = bg.copy()
        x0, y0 = 8 + (2 * i) % (width - 40), 12 + i % (height - 40)
        f[y0:y0 + 28, x0:x0 + 24] = (220, 40, 40)
        cx, cy = width - 20 - (3 * i) % (width - 40), height // 2 + 10
        f[(xx - cx) ** 2 + (yy - cy) ** 2 < 12 ** 2] = (40, 60, 230)
        frames.append(f)
    return frames


def save_jpeg_folder(frames: list[np.ndarray], folder: Path) -> list[np.ndarray]:
    """Write frames as <index>.jpg (Meta's video folder layout); return the decoded pixels Meta will see."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg", quality=95)
    return [np.array(Image.open(folder / f"{i:05d}.jpg").convert("RGB")) for i in range(len(frames))]
