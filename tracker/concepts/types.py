"""What an open-vocabulary detector finds on one image."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Detection:
    """One object found for a text: its box (x0, y0, x1, y1) in the image's pixels, its score in [0, 1] and the
    text (label) it was found for."""

    box: tuple[float, float, float, float]
    score: float
    label: str
