"""Mask encodings against independent codecs: what np.packbits, OpenCV (PNG) and pycocotools (COCO RLE) make
decodes to the very mask they were given, and what samtrack encodes those libraries decode back. Shapes are
not square and not a multiple of 8 pixels (row-major order, padding, transposition all show)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from tracker import protocol as P

SHAPES = [(30, 41), (7, 5), (1, 13), (120, 160)]


def _masks(h: int, w: int) -> list[np.ndarray]:
    """A random mask, an off-centre rectangle, a single pixel, a full and an empty one."""
    rng = np.random.default_rng(h * 1000 + w)
    rect = np.zeros((h, w), bool)
    rect[h // 4: h // 4 + max(1, h // 3), w // 5: w // 5 + max(1, w // 2)] = True
    dot = np.zeros((h, w), bool)
    dot[h - 1, w // 3] = True
    return [rng.random((h, w)) > 0.6, rect, dot, np.ones((h, w), bool), np.zeros((h, w), bool)]


def _by_library(mask: np.ndarray, encoding: str) -> bytes:
    """The bytes a client would send, made by the library the protocol names (not by samtrack)."""
    if encoding == "bits":
        return np.packbits(mask.reshape(-1).astype(np.uint8)).tobytes()  # row-major, MSB first, zero-padded
    if encoding == "png":
        ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255)
        assert ok
        return buf.tobytes()
    return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]


def _with_library(data: bytes, encoding: str, h: int, w: int) -> np.ndarray:
    if encoding == "bits":
        return np.unpackbits(np.frombuffer(data, np.uint8), count=h * w).reshape(h, w).astype(bool)
    if encoding == "png":
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) > 127
    return mask_util.decode({"size": [h, w], "counts": data}).astype(bool)


@pytest.mark.parametrize("encoding", ["bits", "png", "rle"])
@pytest.mark.parametrize("shape", SHAPES)
def test_what_the_libraries_encode_decodes_to_the_same_mask(encoding, shape):
    for mask in _masks(*shape):
        got = P.decode_mask(_by_library(mask, encoding), encoding, *shape)
        assert got.dtype == bool and got.shape == shape and np.array_equal(got, mask)


@pytest.mark.parametrize("encoding", ["bits", "png", "rle"])
@pytest.mark.parametrize("shape", SHAPES)
def test_what_samtrack_encodes_the_libraries_decode(encoding, shape):
    for mask in _masks(*shape):
        assert np.array_equal(_with_library(P.encode_mask(mask, encoding), encoding, *shape), mask)


def test_a_png_with_grey_levels_is_thresholded_at_half():
    img = np.array([[0, 127, 128, 255]], np.uint8)
    data = cv2.imencode(".png", img)[1].tobytes()
    assert P.decode_mask(data, "png", 1, 4).tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("encoding, data, words", [
    ("bits", np.packbits(np.ones(30 * 41, np.uint8)).tobytes()[:-1], "needs 154 bytes"),
    ("bits", np.packbits(np.ones(30 * 41, np.uint8)).tobytes() + b"\0", "needs 154 bytes"),
    ("png", cv2.imencode(".png", np.zeros((41, 30), np.uint8))[1].tobytes(), "expected 41x30"),  # transposed
    ("png", b"\x89PNG\r\n\x1a\nnot really", "not a PNG"),
    ("rle", mask_util.encode(np.asfortranarray(np.ones((30, 40), np.uint8)))["counts"], "covers 1200 pixels"),
    ("rle", b"x", "not a COCO RLE string"),
], ids=["bits-short", "bits-long", "png-transposed", "png-not-png", "rle-short", "rle-not-rle"])
def test_masks_that_do_not_fit_their_size_are_bad_masks(encoding, data, words):
    with pytest.raises(P.ProtocolError) as e:
        P.decode_mask(data, encoding, 30, 41)
    assert e.value.code == "bad_mask" and words in e.value.message, e.value.message
