"""Image-encoder (and memory-attention) backends behind one seam: torch, ONNX Runtime, TensorRT.

A backend maps a preprocessed frame [1, 3, S, S] to the features Meta's `forward_image` returns
(`backbone_fpn` with conv_s0/conv_s1 applied, and `vision_pos_enc`). `engines.base` holds the typed
seams, `engines.factory` picks a backend by name; nothing is imported here, so `engines.cache` loads
without torch."""
