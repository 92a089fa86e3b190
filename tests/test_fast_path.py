"""The fast path (precision bf16: autocast, frames resized on the device, masks made on the device) and its
tolerance contract against the exact fp32 path (docs/engines.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench import contract
from pipelines.synthetic import moving_shapes_frame
from tests.conftest import TEST_IMAGE_SIZE, make_model
from tracker import Tracker
from tracker.core.precision import resolve_precision
from tracker.core.preprocess import IMG_STD, DevicePreprocessor, Preprocessor
from tracker.core.results import make_result, pack_bits
from tracker.models import seeded_model

# The contract of docs/engines.md, for every fast path (written here too: the test states it, bench/contract.py
# measures it).
MEAN_IOU = 0.98
AGREEMENT = 0.98  # share of (frame, object) pairs whose presence and box agree


@pytest.fixture(scope="module")
def model():
    return make_model()


def test_auto_picks_bf16_only_where_the_device_has_it():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, flags={"avx512f", "avx512_bf16"}) == "bf16"
    assert resolve_precision("auto", cpu, flags={"amx_bf16"}) == "bf16"
    assert resolve_precision("auto", cpu, flags={"avx2", "avx512f"}) == "fp32"
    assert resolve_precision("fp32", cpu, flags={"avx512_bf16"}) == "fp32"
    assert resolve_precision("bf16", cpu, flags=set()) == "bf16"  # asked for: given, even if emulated
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", cpu)


def test_bad_precision_option_is_refused(model):
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        Tracker.from_sam2(model, precision="half")


@pytest.mark.parametrize("h, w", [(120, 160), (480, 640), (131, 97)])
def test_device_preprocessing_is_within_two_grey_levels_of_pil(h, w):
    rng = np.random.default_rng(h)
    frame = (moving_shapes_frame(3, h, w).astype(int) + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)
    exact = Preprocessor(256, torch.device("cpu"))(frame)
    fast = DevicePreprocessor(256, torch.device("cpu"))(frame)
    assert fast.shape == exact.shape == (1, 3, 256, 256) and fast.dtype == torch.float32
    grey = (fast - exact).abs() * torch.tensor(IMG_STD)[None, :, None, None] * 255  # back to grey levels
    assert grey.max() <= 2.01 and grey.mean() < 0.05, (grey.max(), grey.mean())
    pil = np.array(Image.fromarray(frame).resize((256, 256)))  # independent check of the reference itself
    assert np.abs(pil / 255.0 - (exact[0].permute(1, 2, 0).numpy() * IMG_STD + (0.485, 0.456, 0.406))).max() < 1e-5


def test_masks_boxes_and_areas_made_on_the_device_match_numpy():
    rng = np.random.default_rng(0)
    for h, w in ((37, 53), (8, 8), (120, 160)):
        low = torch.from_numpy(rng.normal(size=(3, 1, 16, 16)).astype(np.float32))
        low[2] = -5.0  # an empty mask
        res = make_result(7, {i: (low[i:i + 1], torch.tensor([[float(i) - 1]])) for i in range(3)}, h, w)
        up = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        for i, o in res.objects.items():
            m = up[i, 0].numpy() > 0
            assert np.array_equal(o.mask, m) and o.area == int(m.sum())
            assert np.array_equal(o.packed_mask, np.packbits(m.reshape(-1)))
            assert np.array_equal(o.logits, up[i, 0].numpy())
            ys, xs = np.nonzero(m)
            assert o.bbox == ((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())) if m.any() else None)
            assert o.present == (i - 1 > 0)
    bits = torch.from_numpy(rng.random((4, 1001)) > 0.5)
    assert np.array_equal(pack_bits(bits).numpy(), np.packbits(bits.numpy(), axis=1))


@pytest.mark.slow  # 100 frames twice: a minute on a CPU that emulates bf16 (AVX2 only)
def test_bf16_meets_the_tolerance_contract_over_100_frames(model):
    """Seeded weights, objects present, 100 frames, a correction (negative click) on frame 30 and a second
    object added on a past frame at 50: mean mask IoU >= 0.98 against fp32, boxes and presence agree
    on >= 98 % of frames."""
    exact, fast = Tracker.from_sam2(model, precision="fp32"), Tracker.from_sam2(model, precision="bf16")
    _check_contract(exact, fast)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_fast_path_meets_the_contract_against_cpu_fp32(model):
    """The same contract on CUDA: pinned non-blocking frame upload, device resize, device masks."""
    gpu = seeded_model("sam2.1_hiera_t", image_size=TEST_IMAGE_SIZE, device="cuda")
    fast = Tracker.from_sam2(gpu, precision="auto")
    assert fast.precision == ("bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp32")  # native bf16
    _check_contract(Tracker.from_sam2(model, precision="fp32"), fast)


def _check_contract(exact: Tracker, fast: Tracker) -> None:
    result = contract.measure(exact, fast)
    print(result)
    assert result.pairs == 150 and result.mean_iou >= MEAN_IOU, result
    assert result.agreement >= AGREEMENT, result
    if fast.precision == "bf16":
        assert fast.held_bytes() < exact.held_bytes()  # the feature window is held in bf16
