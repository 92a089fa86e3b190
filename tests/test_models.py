"""Building Meta's models from names, checkpoints in Meta's format and seeded random weights."""

from __future__ import annotations

import pytest
import torch

from tracker import CheckpointError, ModelNameError, Tracker
from tracker.models import build_sam2_model
from tracker.models.registry import MODELS, model_spec


def _save_meta_checkpoint(model, path):
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.mark.parametrize("name", list(MODELS))
def test_every_released_model_builds_and_tracks(name):
    """SAM2 and SAM2.1, tiny to large, at a small image size: build, one prompted frame, one tracked frame."""
    t = Tracker.build(name, image_size=64, seed=1)
    frame = torch.randint(0, 255, (40, 50, 3), dtype=torch.uint8).numpy()
    t.step(frame)
    r = t.add_points(1, [[10, 10]], [1])
    assert r.objects[1].logits.shape == (40, 50)
    assert t.step(frame).objects[1].logits.shape == (40, 50)


def test_model_names_and_aliases():
    assert model_spec("sam2.1_hiera_tiny").name == "sam2.1_hiera_t"
    assert model_spec("sam2_hiera_base_plus").name == "sam2_hiera_b+"
    assert model_spec("sam2.1_hiera_l.pt").name == "sam2.1_hiera_l"
    assert model_spec("sam2.1_hiera_s").url.endswith("/092824/sam2.1_hiera_small.pt")
    with pytest.raises(ModelNameError, match="known models: sam2_hiera_t"):
        model_spec("sam3_hiera_t")


def test_seeded_random_weights_are_deterministic():
    a = build_sam2_model("sam2.1_hiera_t", image_size=64, seed=3).state_dict()
    b = build_sam2_model("sam2.1_hiera_t", image_size=64, seed=3).state_dict()
    c = build_sam2_model("sam2.1_hiera_t", image_size=64, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_in_meta_format_loads(tmp_path):
    src = build_sam2_model("sam2.1_hiera_t", image_size=64, seed=7)
    path = _save_meta_checkpoint(src, tmp_path / "sam2.1_hiera_tiny.pt")
    loaded = build_sam2_model("sam2.1_hiera_t", checkpoint=path, image_size=64, seed=0)
    sd, ref = loaded.state_dict(), src.state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    # and it really replaced the seed-0 random weights
    seed0 = build_sam2_model("sam2.1_hiera_t", image_size=64, seed=0).state_dict()
    assert not all(torch.equal(sd[k], seed0[k]) for k in ref)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file not found: .*samtrack weights download"):
        build_sam2_model("sam2.1_hiera_t", checkpoint=tmp_path / "nope.pt", image_size=64)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("this is a text file renamed .pt\n")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        build_sam2_model("sam2.1_hiera_t", checkpoint=p, image_size=64)


def test_checkpoint_not_in_meta_format(tmp_path):
    p = tmp_path / "weights.pt"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, p)
    with pytest.raises(CheckpointError, match="not in Meta's SAM2 checkpoint format.*'state_dict'"):
        build_sam2_model("sam2.1_hiera_t", checkpoint=p, image_size=64)


def test_checkpoint_of_another_model_size(tmp_path):
    tiny = build_sam2_model("sam2.1_hiera_t", image_size=64)
    p = _save_meta_checkpoint(tiny, tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError) as exc:
        build_sam2_model("sam2.1_hiera_s", checkpoint=p, image_size=64)
    msg = str(exc.value)
    assert "does not fit model sam2.1_hiera_s" in msg
    assert "keys missing from the checkpoint" in msg and "image_encoder.trunk.blocks." in msg
    assert "looks like a sam2.1_hiera_t checkpoint" in msg


def test_checkpoint_of_sam2_into_sam21(tmp_path):
    old = build_sam2_model("sam2_hiera_t", image_size=64)
    p = _save_meta_checkpoint(old, tmp_path / "sam2_tiny.pt")
    with pytest.raises(CheckpointError, match="keys missing.*no_obj_embed_spatial.*looks like a sam2_hiera_t"):
        build_sam2_model("sam2.1_hiera_t", checkpoint=p, image_size=64)


def test_bad_image_size():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_sam2_model("sam2.1_hiera_t", image_size=100)


def test_position_caches_sam2_puts_on_another_device_are_rebuilt_where_the_model_is(monkeypatch):
    """sam2 warms its sine position-encoding caches and builds its RoPE frequencies on "cuda" whenever CUDA is
    available, whatever device the model goes to (then copied to it every frame). "meta" stands in for that
    other device: the built model holds none of them there, and tracks."""
    from sam2.modeling.position_encoding import PositionEmbeddingSine, compute_axial_cis
    from sam2.modeling.sam.transformer import RoPEAttention

    sine_init, rope_init = PositionEmbeddingSine.__init__, RoPEAttention.__init__

    def sine_elsewhere(self, *args, **kwargs):
        sine_init(self, *args, **kwargs)
        for stride in (4, 8, 16, 32):  # sam2's warm-up, on the other device
            self._pe(1, torch.device("meta"), 64 // stride, 64 // stride)

    def rope_elsewhere(self, *args, **kwargs):
        rope_init(self, *args, **kwargs)
        self.freqs_cis = self.freqs_cis.to("meta")

    monkeypatch.setattr(PositionEmbeddingSine, "__init__", sine_elsewhere)
    monkeypatch.setattr(RoPEAttention, "__init__", rope_elsewhere)
    net = build_sam2_model(image_size=64, device="cpu")
    sines = [m for m in net.modules() if isinstance(m, PositionEmbeddingSine)]
    ropes = [m for m in net.modules() if isinstance(m, RoPEAttention)]
    assert len(sines) == 2 and len(ropes) == 8  # image encoder's neck and memory encoder; 4 layers x 2
    assert all(x.device.type == "cpu" for m in sines for x in m.cache.values())
    for m in ropes:  # the frequencies sam2 computed on the CPU, bit for bit
        assert m.freqs_cis.device.type == "cpu" and torch.equal(m.freqs_cis, compute_axial_cis(dim=256, end_x=64,
                                                                                               end_y=64))
    t = Tracker.from_sam2(net, backend="torch")  # Meta's modules fill the caches this test looks at
    frame = torch.randint(0, 255, (40, 50, 3), dtype=torch.uint8).numpy()
    t.step(frame)
    t.add_points(1, [[10, 10]], [1])
    t.step(frame)
    assert all(x.device.type == "cpu" for m in sines for x in m.cache.values()) and any(m.cache for m in sines)
