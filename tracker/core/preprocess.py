"""Frame checks, and preprocessing: identical to Meta's JPEG-folder loader (sam2/utils/misc.py) on the exact
path, on the device on the fast path."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import FrameError

# ImageNet statistics used by Meta's loader.
IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


def check_frame(frame: object) -> np.ndarray:
    """Return the frame if it is an HxWx3 uint8 RGB array; raise FrameError saying what is wrong."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"frame must be a numpy array (HxWx3 uint8 RGB), got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"frame must have shape HxWx3 (RGB), got {frame.shape}")
    if frame.dtype != np.uint8:
        raise FrameError(f"frame must be uint8, got {frame.dtype}; convert with frame.astype(np.uint8)")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise FrameError(f"frame is empty: {frame.shape}")
    return frame


class Preprocessor:
    """RGB uint8 frame -> normalized [1, 3, S, S] float32 tensor, bit-identical to Meta's loader."""

    def __init__(self, image_size: int, device: torch.device):
        self.image_size = image_size
        self.device = device
        self.mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]

    def __call__(self, frame: np.ndarray) -> torch.Tensor:
        s = self.image_size
        # PIL resize with its default filter, /255 in float64, then float32: Meta's order exactly.
        img = np.array(Image.fromarray(np.ascontiguousarray(frame), "RGB").resize((s, s))) / 255.0
        x = torch.from_numpy(img).permute(2, 0, 1).to(torch.float32)
        x -= self.mean
        x /= self.std
        return x.unsqueeze(0).to(self.device)


class DevicePreprocessor:
    """The fast path's preprocessing: the uint8 frame goes to the device once (pinned, non-blocking on
    CUDA) and is resized there with antialiased bicubic (PIL's filter; on CPU torch's uint8 kernel is
    within 2 grey levels of PIL, mean 0.005), then normalized in float32."""

    def __init__(self, image_size: int, device: torch.device):
        self.image_size = image_size
        self.device = device
        self.mean = torch.tensor(IMG_MEAN, dtype=torch.float32, device=device)[None, :, None, None]
        self.std = torch.tensor(IMG_STD, dtype=torch.float32, device=device)[None, :, None, None]

    def __call__(self, frame: np.ndarray) -> torch.Tensor:
        s = (self.image_size,) * 2
        frame = np.ascontiguousarray(frame)
        if not frame.flags.writeable:  # a decoder's buffer: torch only wraps writable memory
            frame = frame.copy()
        x = torch.from_numpy(frame)
        if self.device.type == "cuda":
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=True).permute(2, 0, 1).unsqueeze(0)
        if x.device.type == "cpu":  # resized as uint8, like PIL
            x = F.interpolate(x, size=s, mode="bicubic", antialias=True, align_corners=False).float()
        else:  # GPUs resize floats only: round and clamp as PIL's uint8 result would be
            x = F.interpolate(x.float(), size=s, mode="bicubic", antialias=True, align_corners=False)
            x = x.round_().clamp_(0, 255)
        return (x / 255.0 - self.mean) / self.std
