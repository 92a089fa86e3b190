"""Shared fixtures: small seeded SAM2 models and synthetic videos (CPU, no downloads)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pipelines.synthetic import moving_shapes
from tests.synthetic import save_jpeg_folder
from tracker.models import seeded_model


def pytest_configure(config):
    """No test reaches the Hugging Face hub: offline before any test module imports huggingface_hub (which reads
    it once). The test of detector downloads unsets it in the child it starts, pointed at a closed local port."""
    os.environ["HF_HUB_OFFLINE"] = "1"


# Small enough for a 2-core CI, large enough for 8x8 top-level features and real memory attention.
TEST_IMAGE_SIZE = 128
N_FRAMES = 24


def make_model(present: bool = True, image_size: int = TEST_IMAGE_SIZE, seed: int = 0, **attrs):
    """Meta's video predictor with seeded random weights, objects forced present when asked, and
    model attributes overridden by `attrs`."""
    torch.set_num_threads(2)
    model = seeded_model("sam2.1_hiera_t", image_size=image_size, seed=seed, present=present)
    for k, v in attrs.items():
        assert hasattr(model, k), k
        setattr(model, k, v)
    return model


@pytest.fixture(scope="session")
def video(tmp_path_factory) -> tuple[str, list[np.ndarray]]:
    """A 24-frame JPEG folder for Meta's predictor and the decoded frames samtrack is fed."""
    folder = tmp_path_factory.mktemp("video")
    frames = save_jpeg_folder(moving_shapes(N_FRAMES), folder)
    return str(folder), frames


@pytest.fixture(scope="session")
def long_video(tmp_path_factory) -> tuple[str, list[np.ndarray]]:
    folder = tmp_path_factory.mktemp("long_video")
    frames = save_jpeg_folder(moving_shapes(40, seed=1), folder)
    return str(folder), frames
