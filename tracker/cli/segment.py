"""`samtrack segment IMAGE`: one image with clicks and/or a box, Meta's image predictor, mask PNG and overlay."""

from __future__ import annotations

import logging

from ..core.options import BACKEND_CHOICES
from ..paths import existing_file, file_to_write
from .args import CHECKPOINT, HelpFormatter, box, image_size, point


def add_segment_parser(sub) -> None:
    p = sub.add_parser("segment", help="segment one image from clicks and/or a box (Meta's image predictor)",
                       formatter_class=HelpFormatter)
    p.add_argument("image", type=existing_file("image"), help="an image file (PNG, JPEG, ...)")
    p.add_argument("--point", type=point, action="append", default=[], help="a click X,Y[,LABEL] (repeatable)")
    p.add_argument("--box", type=box, help="a box X0,Y0,X1,Y1")
    p.add_argument("--multimask", action="store_true", help="three candidate masks with their scores")
    p.add_argument("--out", default="mask.png", type=file_to_write("mask file", "mask.png"),
                   help="mask PNG (255 inside); with --multimask, NAME-0.png ...")
    p.add_argument("--overlay", type=file_to_write("overlay file", "overlay.png"),
                   help="also write the image with the mask drawn on it (PNG)")
    p.add_argument("--model", default="sam2.1_hiera_t", help="model name (see `samtrack weights list`)")
    p.add_argument("--checkpoint", type=CHECKPOINT,
                   help="checkpoint file (default: the cached one, else random weights)")
    p.add_argument("--image-size", type=image_size, default=1024, help="model input size (512 is faster on CPUs)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="image encoder: auto (OpenVINO on CPUs), torch (Meta's, exact), openvino, ...")
    p.set_defaults(func=run_segment)


def run_segment(args) -> int:
    from pathlib import Path

    import cv2
    import numpy as np

    from engines.factory import make_encoder
    from pipelines.overlay import OverlayObject, draw_overlay

    from ..build import resolve_backend
    from ..errors import SamtrackError
    from ..models import build_sam2_model, weights
    from ..runner.segment import check_prompts, read_image, segment

    out = Path(args.out)
    if not args.point and args.box is None:
        raise SamtrackError("no prompt: give --point X,Y[,LABEL] (repeatable) and/or --box X0,Y0,X1,Y1")
    for name in filter(None, (args.out, args.overlay)):
        if not cv2.haveImageWriter(str(name)):
            raise SamtrackError(f"cannot write an image named {name}: use a .png name")
    try:
        image = read_image(args.image)
    except OSError as e:
        raise SamtrackError(str(e)) from e
    points = [p[:2] for p in args.point] or None
    labels = [p[2] for p in args.point] or None
    check_prompts(image, points, labels, args.box)  # before the model loads
    checkpoint = weights.resolve_checkpoint(args.model, args.checkpoint)
    if checkpoint is None:
        logging.getLogger(__name__).warning("%s", weights.random_weights_warning(args.model))
    model = build_sam2_model(args.model, checkpoint, args.image_size, args.device)
    backend = resolve_backend(args.backend, model)
    encoder = None if backend == "torch" else make_encoder(backend, model)
    result = segment(model, image, points, labels, args.box, args.multimask, encoder)
    names = [out] if not args.multimask else [out.with_name(f"{out.stem}-{i}{out.suffix}")
                                              for i in range(len(result.masks))]
    for name, mask, score in zip(names, result.masks, result.scores):
        if not cv2.imwrite(str(name), mask.astype(np.uint8) * 255):
            raise SamtrackError(f"cannot write {name} (use a .png name)")
        print(f"{name}  score {score:.3f}  area {int(mask.sum())}")
    if args.overlay:
        drawn = draw_overlay(image, [OverlayObject(1, result.masks[0], result.scores[0])])
        if not cv2.imwrite(args.overlay, np.ascontiguousarray(drawn[..., ::-1])):
            raise SamtrackError(f"cannot write {args.overlay} (use a .png name)")
        print(f"{args.overlay}  (best mask drawn)")
    return 0
