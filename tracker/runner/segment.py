"""`samtrack segment`: one image and its prompts through Meta's image predictor, on the same model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.prompts import check_box, check_points
from ..errors import PromptError


@dataclass(frozen=True)
class Segmentation:
    """The predicted masks (HxW bool), best first, with the model's predicted IoU for each."""

    masks: list[np.ndarray]
    scores: list[float]


def read_image(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; PromptError-free, but a clear OSError for a bad path or file."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {p}")
    try:
        with Image.open(p) as img:
            return np.array(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise OSError(f"{p} is not an image PIL can read: {e}") from e


def check_prompts(image: np.ndarray, points=None, labels=None, box=None) -> tuple:
    """Clicks and box checked against the image: (points, labels, box) as Meta's predictor takes them;
    PromptError saying what is wrong."""
    h, w = image.shape[:2]
    if points is None and box is None:
        raise PromptError("give points (with labels) or a box")
    pts, lab = (None, None) if points is None else check_points(points, labels, w, h)
    return pts, lab, None if box is None else check_box(box, w, h)


@torch.inference_mode()
def segment(model: torch.nn.Module, image: np.ndarray, points=None, labels=None, box=None,
            multimask: bool = False, encoder=None) -> Segmentation:
    """Masks for clicks (x, y; labels 1/0) and/or a box (x0, y0, x1, y1) in image pixels; `encoder`: a compiled
    image encoder in place of the model's own (engines/)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pts, lab, b = check_prompts(image, points, labels, box)
    with warnings.catch_warnings():  # Meta's transforms use torch.jit.script, which torch now deprecates
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
        predictor = SAM2ImagePredictor(model)
    # Meta's predictor hard-codes the feature sizes of a 1024 px model; give it this model's.
    side = int(model.image_size)
    predictor._bb_feat_sizes = [(side // 4, side // 4), (side // 8, side // 8), (side // 16, side // 16)]
    if encoder is not None:  # the predictor calls model.forward_image: the compiled encoder answers instead
        model.forward_image = encoder
    try:
        predictor.set_image(image)
    finally:
        model.__dict__.pop("forward_image", None)
    masks, scores, _ = predictor.predict(point_coords=pts, point_labels=lab, box=b, multimask_output=multimask)
    order = np.argsort(-scores)
    return Segmentation([masks[i] > 0 for i in order], [float(scores[i]) for i in order])
