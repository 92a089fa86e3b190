"""Image-encoder backends behind one seam: torch, ONNX Runtime, TensorRT.

A backend maps a preprocessed frame [1, 3, S, S] to the features Meta's `forward_image` returns
(`backbone_fpn` with conv_s0/conv_s1 applied, and `vision_pos_enc`)."""

from .base import BACKENDS, EncoderBackend, make_encoder

__all__ = ["BACKENDS", "EncoderBackend", "make_encoder"]
