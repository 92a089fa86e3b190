"""Masks carried between key frames (tracker/motion/) against the truth of synthetic scenes (pipelines/scenes.py):
SAM 2's masks mean nothing with random weights, so the key frame's masks are the scene's true masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipelines.scenes import SCENES, Scene
from tracker.core.results import FrameResult, ObjectResult
from tracker.motion.carrier import Carrier
from tracker.motion.warp import box_of, move_mask


def _seed(frame: int, masks: dict[int, np.ndarray], score: float = 10.0) -> FrameResult:
    return FrameResult(frame, {i: ObjectResult(i, score, box_of(m), int(m.sum()), np.packbits(m.reshape(-1)),
                                               m.shape[0], m.shape[1], None) for i, m in masks.items()})


def _carry(scene: Scene, key: int, ages: int) -> list[FrameResult]:
    first = scene.frame(key)
    c = Carrier(scene.width, scene.height)
    c.add(key, 0, first.image)
    c.seed(_seed(key, first.masks))
    out = []
    for a in range(1, ages + 1):
        c.add(key + a, 0, scene.frame(key + a).image)
        out.append(c.carry())
    return out


def _grown(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def test_a_pure_translation_lands_within_a_pixel_of_the_truth():
    """Objects moving 8,5 px (and -6,3.5 and 3.5,-7) a frame: every carried pixel is within 1 px of the true mask
    and every true pixel within 1 px of the carried one, up to 15 frames from the key frame."""
    scene = Scene("translate")
    near = np.ones((3, 3), np.uint8)
    for r in _carry(scene, 4, 15):
        truth = scene.frame(r.frame_index).masks
        assert r.source == "motion" and r.key_frame == 4 and r.objects.keys() == truth.keys()
        for i, o in r.objects.items():
            assert o.area > 0 and o.bbox == box_of(o.mask) and o.area == int(o.mask.sum())
            assert not (o.mask & ~_grown(truth[i], near)).any(), (r.frame_index, i)
            assert not (truth[i] & ~_grown(o.mask, near)).any(), (r.frame_index, i)


def test_the_camera_panning_under_the_objects_changes_nothing():
    scene = Scene("pan")
    results = _carry(scene, 10, 15)
    ious = [_iou(o.mask, scene.frame(r.frame_index).masks[i]) for r in results for i, o in r.objects.items()]
    assert min(ious) >= 0.97


def test_rotation_and_scale_are_followed():
    scene = Scene("rotate_scale")
    for r in _carry(scene, 3, 10):
        for i, o in r.objects.items():
            assert _iou(o.mask, scene.frame(r.frame_index).masks[i]) >= 0.9, (r.frame_index, i)


def test_a_deforming_object_follows_dense_flow_and_beats_a_still_mask():
    """Points that keep disagreeing with one similarity switch the object to dense flow; its masks are closer to
    the truth than the key frame's mask left in place."""
    scene = Scene("deform")
    key, ages = 7, 6
    c = Carrier(scene.width, scene.height)
    c.add(key, 0, scene.frame(key).image)
    c.seed(_seed(key, scene.frame(key).masks))
    for a in range(1, ages + 1):
        c.add(key + a, 0, scene.frame(key + a).image)
    assert c.stats().dense >= 1
    truth, still = scene.frame(key + ages).masks, scene.frame(key).masks
    for i, o in c.carry().objects.items():
        assert _iou(o.mask, truth[i]) > _iou(still[i], truth[i]) + 0.1, i


@pytest.mark.parametrize("name", ["translate", "pan", "rotate_scale", "crowd"])
def test_rigid_objects_never_go_dense(name):
    scene = Scene(name)
    c = Carrier(scene.width, scene.height)
    c.add(0, 0, scene.frame(0).image)
    c.seed(_seed(0, scene.frame(0).masks))
    for i in range(1, 16):
        c.add(i, 0, scene.frame(i).image)
        assert c.stats().dense == 0, i


def test_an_object_without_texture_keeps_its_mask_and_score():
    """No corner to follow (a flat object on a flat background): the mask is held where the key frame had it, its
    score carried; the carrier says so."""
    image = np.full((120, 160, 3), 90, np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[30:70, 40:100] = True
    image[mask] = (200, 40, 40)
    c = Carrier(160, 120)
    c.add(0, 0, image)
    c.seed(_seed(0, {1: mask}, score=-2.5))
    c.add(1, 0, image)
    o = c.carry().objects[1]
    assert np.array_equal(o.mask, mask) and o.score == -2.5 and not o.present
    assert c.stats().held == 1


def test_a_seed_for_a_frame_no_longer_kept_is_held_unmoved():
    scene = Scene("translate")
    c = Carrier(scene.width, scene.height, ring=4)
    for i in range(10):
        c.add(i, 0, scene.frame(i).image)
    c.seed(_seed(2, scene.frame(2).masks))  # 8 frames ago: out of the ring
    assert c.held_seeds == 1 and c.key_frame == 2
    r = c.carry()
    assert r.frame_index == 9 and r.key_frame == 2
    assert all(np.array_equal(o.mask, scene.frame(2).masks[i]) for i, o in r.objects.items())


def test_frames_come_in_order_and_at_one_size():
    c = Carrier(160, 120)
    c.add(3, 0, np.zeros((120, 160, 3), np.uint8))
    with pytest.raises(ValueError, match="in order"):
        c.add(3, 0, np.zeros((120, 160, 3), np.uint8))
    with pytest.raises(ValueError, match="160x120"):
        c.add(4, 0, np.zeros((100, 160, 3), np.uint8))


def test_a_large_frame_is_tracked_shrunk_and_moved_at_full_size():
    """1280x960 frames are tracked at 640x480 (MOTION_MAX_SIDE); the translation still lands within 2 px."""
    scene = Scene("translate", 1280, 960)
    near = np.ones((5, 5), np.uint8)
    for r in _carry(scene, 0, 6):
        truth = scene.frame(r.frame_index).masks
        for i, o in r.objects.items():
            assert o.mask.shape == (960, 1280)
            assert not (o.mask & ~_grown(truth[i], near)).any(), (r.frame_index, i)


def test_a_mask_moved_by_whole_pixels_is_an_exact_copy():
    mask = np.zeros((50, 60), bool)
    mask[10:20, 5:30] = True
    mask[12, 40] = True
    m = np.array([[1.0, 0, 7], [0, 1.0, -3], [0, 0, 1]])
    moved = move_mask(mask, box_of(mask), m)
    expected = np.zeros_like(mask)
    expected[7:17, 12:37] = True
    expected[9, 47] = True
    got = np.unpackbits(moved.packed, count=mask.size).reshape(mask.shape).view(bool)
    assert np.array_equal(got, expected) and moved.bbox == (12, 7, 47, 16) and moved.area == int(expected.sum())
    gone = move_mask(mask, box_of(mask), np.array([[1.0, 0, 500], [0, 1, 0], [0, 0, 1]]))
    assert gone.bbox is None and gone.area == 0


def test_every_scene_renders_its_true_masks():
    for name in SCENES:
        scene = Scene(name, 320, 240)
        f = scene.frame(11)
        assert f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8
        assert all(m.shape == (240, 320) and m.any() for m in f.masks.values()), name
        assert np.array_equal(scene.frame(11).image, f.image)  # a pure function of the frame number
    with pytest.raises(ValueError, match="unknown scene"):
        Scene("nope")
