"""The open-vocabulary detectors at tiny configs and seeded random weights (real forward passes, no download),
their input checks, CLIP's tokenizer from open_clip's vocabulary, and detector weights without a network."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tracker.concepts.types import Detection
from tracker.errors import CheckpointError, DeviceError, FrameError, ModelNameError, PromptError
from tracker.models.detectors import MAX_TEXTS, Detector, cached_snapshot, load_detector

TEXTS = ["a cat", "red forklift"]
# A WordPiece vocabulary for the tiny Grounding DINO (BERT's own ships with no installed package).
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "cat", "dog", "red", "forklift"]


def tiny_config(name: str):
    """A few layers of a few channels: each detector's own modules, a forward pass in well under a second."""
    import transformers as T

    heads = dict(num_attention_heads=2, intermediate_size=64, num_hidden_layers=1)
    swin = dict(model_type="swin", image_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                window_size=2, out_indices=[2, 3, 4])
    if name == "owlv2-base":
        return T.Owlv2Config(text_config=dict(hidden_size=32, **heads), projection_dim=32,
                             vision_config=dict(image_size=64, patch_size=16, hidden_size=32, **heads))
    if name == "omdet-turbo":
        # transformers' Swin backbone returns channels first: no layer norm meant for timm's channels-last maps.
        # OmDet-Turbo projects tasks only where the class width differs from the decoder's (48 vs 32).
        return T.OmDetTurboConfig(
            backbone_config=swin, use_timm_backbone=False, image_size=64, apply_layernorm_after_vision_backbone=False,
            text_config=dict(model_type="clip_text_model", hidden_size=48, **heads), text_projection_in_dim=48,
            text_projection_out_dim=48, task_encoder_hidden_dim=48, class_embed_dim=48,
            encoder_in_channels=[32, 64, 128], vision_features_channels=[32, 32, 32], encoder_hidden_dim=32,
            encoder_dim_feedforward=32, encoder_attention_heads=2, decoder_hidden_dim=32, decoder_num_heads=2,
            decoder_num_layers=1, decoder_dim_feedforward=32, num_queries=20)
    assert name == "grounding-dino-tiny"
    return T.GroundingDinoConfig(  # two decoder layers: its box heads are tied from the second on
        backbone_config={k: v for k, v in swin.items() if k != "image_size"},
        text_config=dict(model_type="bert", vocab_size=len(WORDS), hidden_size=32, **heads), d_model=32,
        encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
        decoder_attention_heads=2, num_queries=20, max_text_len=32, encoder_n_points=2, decoder_n_points=2)


FAMILIES = ["owlv2-base", "omdet-turbo", "grounding-dino-tiny"]


@pytest.fixture(scope="module", params=FAMILIES)
def detector(request, tmp_path_factory) -> Detector:
    torch.set_num_threads(2)
    vocab = {w: i for i, w in enumerate(WORDS)} if request.param == "grounding-dino-tiny" else None
    return load_detector(request.param, config=tiny_config(request.param), directory=tmp_path_factory.mktemp("c"),
                         vocab=vocab)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


def test_detections_are_typed_in_the_image_and_labelled_by_the_texts(detector, image):
    assert isinstance(detector, Detector)
    found = detector.detect(image, TEXTS, 0.0)
    assert found, f"{detector.name}: threshold 0 found nothing"
    for d in found:
        assert isinstance(d, Detection) and d.label in TEXTS
        x0, y0, x1, y1 = d.box
        assert all(isinstance(v, float) for v in d.box) and isinstance(d.score, float)
        assert 0 <= x0 <= x1 <= 80 and 0 <= y0 <= y1 <= 48, d.box
        assert 0 <= d.score <= 1
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)


def test_threshold_above_one_finds_nothing_and_threshold_filters(detector, image):
    assert detector.detect(image, TEXTS, 1.5) == []
    every = detector.detect(image, TEXTS, 0.0)
    cut = every[len(every) // 2].score
    assert all(d.score > cut for d in detector.detect(image, TEXTS, cut))


@pytest.mark.parametrize("bad", [np.zeros((48, 80, 3), np.float32), np.zeros((48, 80), np.uint8),
                                 np.zeros((48, 80, 4), np.uint8), np.zeros((4, 80, 3), np.uint8), [[0, 0, 0]]])
def test_bad_images_are_refused(detector, bad):
    with pytest.raises(FrameError, match="HxWx3 uint8|pixels"):
        detector.detect(bad, TEXTS, 0.5)


@pytest.mark.parametrize(("texts", "why"), [
    (["x"] * (MAX_TEXTS + 1), f"1 to {MAX_TEXTS} texts"), ([], "1 to"), (["a cat", "  "], "non-empty"),
    ("a cat", "list of strings"), ([3], "non-empty string"), (["a" * 65], "at most 64"),
])
def test_bad_texts_are_refused(detector, image, texts, why):
    with pytest.raises(PromptError, match=why):
        detector.detect(image, texts, 0.5)


@pytest.mark.parametrize("threshold", [-0.1, float("nan"), "0.5", None])
def test_bad_thresholds_are_refused(detector, image, threshold):
    with pytest.raises(PromptError, match="threshold"):
        detector.detect(image, TEXTS, threshold)


def test_unknown_detector_name():
    with pytest.raises(ModelNameError, match="unknown detector 'yolo'.*owlv2-base, omdet-turbo"):
        load_detector("yolo")


def test_sam3_needs_a_gpu():
    with pytest.raises(DeviceError, match="CUDA GPU only"):
        load_detector("sam3", device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="SAM 3's detector runs on a CUDA GPU only")
def test_sam3_on_a_gpu(tmp_path, image):
    import transformers as T

    config = T.Sam3Config()
    det = load_detector("sam3", device="cuda", config=config, directory=tmp_path)
    found = det.detect(image, TEXTS, 0.0)
    assert found and all(d.label in TEXTS and 0 <= d.score <= 1 for d in found)
    assert det.detect(image, TEXTS, 1.5) == []


def test_grounding_dino_says_it_needs_a_download_for_its_tokenizer(tmp_path):
    with pytest.raises(CheckpointError, match="vocab.txt.*samtrack weights download grounding-dino-tiny"):
        load_detector("grounding-dino-tiny", config=tiny_config("grounding-dino-tiny"), directory=tmp_path)


def test_random_weights_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        load_detector("owlv2-base", config=tiny_config("owlv2-base"), directory=tmp_path)
    assert "seeded RANDOM weights, every detection is MEANINGLESS" in caplog.text
    assert "samtrack weights download owlv2-base" in caplog.text


def test_seeded_weights_are_deterministic(tmp_path, image):
    a, b = (load_detector("omdet-turbo", config=tiny_config("omdet-turbo"), directory=tmp_path, seed=3)
            for _ in range(2))
    assert a.detect(image, TEXTS, 0.0) == b.detect(image, TEXTS, 0.0)


@pytest.mark.parametrize("text", ["a photo of a forklift", "Person in a RED vest!", "it's 2 dogs, 3 cats",
                                  "naïve café", "  many   spaces  "])
def test_clip_tokenizer_from_open_clip_vocabulary_matches_open_clip(text):
    import open_clip

    from tracker.models.detectors.clip_vocab import clip_tokenizer

    theirs = open_clip.get_tokenizer("ViT-B-32")([text])[0].tolist()
    theirs = theirs[:theirs.index(49407) + 1]  # open_clip pads with zeros after the end token
    assert clip_tokenizer(77)(text)["input_ids"] == theirs


def test_a_changed_download_is_refused(tmp_path):
    root = tmp_path / "snapshot"
    root.mkdir()
    (root / "config.json").write_text("{}")
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "owlv2-base.json").write_text(json.dumps({"path": str(root), "files": {"config.json": 2}}))
    assert cached_snapshot("owlv2-base", tmp_path) == root
    (root / "config.json").write_text("{1}")
    with pytest.raises(CheckpointError, match="missing or changed.*--force"):
        cached_snapshot("owlv2-base", tmp_path)


def _samtrack(*args, env):
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_weights_download_of_a_detector_without_network_fails_clearly(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on: the "hub" refuses every connection
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "SAMTRACK_CACHE_DIR")}
    r = _samtrack("weights", "download", "omdet-turbo", "--base-url", f"http://127.0.0.1:{port}",
                  "--cache-dir", str(tmp_path), "--quiet", env=env)
    assert r.returncode == 2, r.stderr
    assert f"cannot reach http://127.0.0.1:{port} for omlab/omdet-turbo-swin-tiny-hf" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "hub" / "omdet-turbo.json").exists()


def test_grounding_dino_labels_come_from_each_texts_own_tokens():
    from tracker.models.detectors.grounding_dino import _tokens_in, offline_processor, prompt_of

    prompt, spans = prompt_of(["a Cat", "red forklift"])
    assert prompt == "a cat. red forklift." and [prompt[a:b] for a, b in spans] == ["a cat", "red forklift"]
    tokenizer = offline_processor({w: i for i, w in enumerate(WORDS)}).tokenizer
    enc = tokenizer(prompt, return_offsets_mapping=True)
    words = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert [[words[i] for i in _tokens_in(enc["offset_mapping"], s)] for s in spans] == [["a", "cat"],
                                                                                          ["red", "forklift"]]


# Where each model's output boxes are (normalized cx, cy, w, h) and what they are relative to: OWLv2's to the
# square its processor pads the image to, the others' to the image itself.
BOX_OUTPUTS = {"owlv2-base": ("pred_boxes", (0.0, 0.0, 40.0, 40.0)),
               "omdet-turbo": ("decoder_coord_logits", (0.0, 0.0, 40.0, 24.0)),
               "grounding-dino-tiny": ("pred_boxes", (0.0, 0.0, 40.0, 24.0))}


def test_boxes_are_in_the_images_pixels(detector, image, monkeypatch):
    field, expected = BOX_OUTPUTS[detector.name]
    forward = detector.model.forward

    def every_box_at_the_top_left_quarter(*args, **kwargs):
        out = forward(*args, **kwargs)
        getattr(out, field)[...] = torch.tensor([0.25, 0.25, 0.5, 0.5])
        return out

    monkeypatch.setattr(detector.model, "forward", every_box_at_the_top_left_quarter)
    found = detector.detect(image, TEXTS, 0.0)  # the image is 80 wide, 48 high
    assert found and {d.box for d in found} == {expected}
