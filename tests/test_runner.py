"""Files in, files out: `samtrack track` on a video made by GStreamer, `samtrack segment` on an image, and
results as supervision Detections drawn by supervision's default annotators."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from pipelines.overlay import color_for
from pipelines.source import GstSource
from pipelines.synthetic import moving_shapes_frame
from tracker import Tracker

SIZE = 64  # model input size: small for CI
W, H, N = 160, 120, 12
BOX, POINT = [40, 30, 120, 90], [60, 50]  # object 1's box on frame 0, object 2's click on frame 4


def _samtrack(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A moving ball, encoded by gst-launch-1.0 (not by samtrack)."""
    path = tmp_path_factory.mktemp("track") / "ball.mkv"
    desc = (f"videotestsrc num-buffers={N} pattern=ball ! video/x-raw,width={W},height={H},framerate=10/1 ! "
            f"videoconvert ! x264enc ! matroskamux ! filesink location={path}")
    subprocess.run(["gst-launch-1.0", "-q", *shlex.split(desc)], check=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def tracked(video, tmp_path_factory):
    out = tmp_path_factory.mktemp("track-out")
    r = _samtrack("track", str(video), "--box", ",".join(map(str, BOX)), "--frame", "4", "--object", "2",
                  "--point", ",".join(map(str, POINT)), "--out", str(out / "overlay.mkv"), "--masks",
                  str(out / "masks.jsonl"), "--image-size", str(SIZE), "--precision", "fp32", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{N} frames, 2 object(s)" in r.stdout
    return out


def _decoded(path: Path) -> list[np.ndarray]:
    with GstSource(str(path)) as src:
        return [f.image for f in src]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _mask(entry: dict) -> np.ndarray:
    return mask_util.decode({"size": entry["mask"]["size"], "counts": entry["mask"]["counts"].encode()}).astype(bool)


def test_masks_file_holds_what_the_library_returns(video, tracked):
    """The same frames (decoded by GStreamer) and prompts through the library directly."""
    tracker = Tracker.build("sam2.1_hiera_t", image_size=SIZE, precision="fp32")
    expected = []
    for i, frame in enumerate(_decoded(video)):
        r = tracker.step(frame)
        if i == 0:
            r = tracker.add_box(1, BOX)
        if i == 4:
            r = tracker.add_points(2, [POINT], [1])
        expected.append(r)
    records = _records(tracked / "masks.jsonl")
    assert [r["frame"] for r in records] == list(range(N)) and len(expected) == N
    for rec, exp in zip(records, expected, strict=True):
        assert [o["id"] for o in rec["objects"]] == list(exp.objects)
        for o in rec["objects"]:
            e = exp.objects[o["id"]]
            assert np.array_equal(_mask(o), e.mask) and o["area"] == e.area
            assert o["bbox"] == (list(e.bbox) if e.bbox else None) and o["score"] == round(e.score, 4)


def test_overlay_video_has_every_frame_and_each_object_in_its_colour(video, tracked):
    """Inside a mask the overlay is the frame blended with the object's colour (alpha 0.45; object 2 is
    drawn over object 1 where both are): solve the blend for the colour and compare."""
    source, overlay = _decoded(video), _decoded(tracked / "overlay.mkv")
    assert len(overlay) == N and overlay[0].shape == (H, W, 3)
    records = _records(tracked / "masks.jsonl")
    a = 0.45
    c1, c2 = np.array(color_for(1), float), np.array(color_for(2), float)

    def median(frame: int, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert where.sum() > 50, f"too few pixels to check on frame {frame}"
        return (np.median(overlay[frame][where].astype(float), axis=0),
                np.median(source[frame][where].astype(float), axis=0))

    only1 = _mask(records[2]["objects"][0])  # frame 2: object 1 alone
    out, src = median(2, only1)
    assert np.abs((out - (1 - a) * src) / a - c1).max() < 40, (out, src)
    m = {o["id"]: _mask(o) for o in records[8]["objects"]}
    out, src = median(8, m[1] & m[2])  # both: blend(blend(frame, c1), c2)
    assert np.abs((out - (1 - a) ** 2 * src - a * (1 - a) * c1) / a - c2).max() < 40, (out, src)
    assert np.abs(overlay[2][~only1].astype(float) - source[2][~only1]).mean() < 12  # the rest as it was


@pytest.mark.slow
def test_prompts_file_gives_the_same_masks_as_flags(video, tracked, tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"frame": 4, "object": 2, "points": [POINT], "labels": [1]},
                                   {"frame": 0, "object": 1, "box": BOX}]))
    r = _samtrack("track", str(video), "--prompts", str(prompts), "--masks", str(tmp_path / "m.jsonl"),
                  "--image-size", str(SIZE), "--precision", "fp32", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "m.jsonl").read_text() == (tracked / "masks.jsonl").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["--point", "500,10"], "outside the frame"),
    (["--frame", "30", "--point", "10,10"], f"has {N} frames (0..{N - 1}); prompts on frame 30"),
    (["--box", "10,10,5,5"], "x0 < x1"),
    (["--point", "10,10,2"], "label is 1 (positive) or 0 (negative)"),
    ([], "no prompt"),
])
def test_bad_prompts_are_explained(video, tmp_path, args, words):
    r = _samtrack("track", str(video), *args, "--masks", str(tmp_path / "m.jsonl"), "--image-size", str(SIZE),
                  "--quiet")
    assert r.returncode == 2 and words in r.stderr, r.stderr[-2000:]


@pytest.mark.slow
def test_bad_paths_are_explained(video, tmp_path):
    r = _samtrack("track", str(tmp_path / "none.mp4"), "--point", "1,1", "--masks", str(tmp_path / "m.jsonl"))
    assert r.returncode == 2 and "file not found" in r.stderr
    r = _samtrack("track", str(video), "--point", "1,1", "--masks", str(tmp_path / "no" / "m.jsonl"))
    assert r.returncode == 2 and "output directory does not exist" in r.stderr
    bad = tmp_path / "p.json"
    bad.write_text('[{"frame": 0, "points": [[1, 2]], "labels": [1], "colour": "red"}]')
    r = _samtrack("track", str(video), "--prompts", str(bad), "--masks", str(tmp_path / "m.jsonl"))
    assert r.returncode == 2 and "prompt 0: colour: Extra inputs are not permitted" in r.stderr


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # Meta's transforms
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_segment_is_metas_image_predictor(tmp_path, backend):
    """`--backend torch` gives Meta's image predictor's masks bit for bit and its scores; the default (OpenVINO's
    encoder, bf16 where the CPU computes it) keeps the tolerance contract (docs/engines.md): IoU >= 0.98 per mask,
    the same ranking, scores within 0.02."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from tracker.models import build_sam2_model

    image = moving_shapes_frame(0, H, W)
    Image.fromarray(image).save(tmp_path / "img.png")
    r = _samtrack("segment", str(tmp_path / "img.png"), "--point", "60,50", "--point", "5,5,0", "--box",
                  "30,20,130,100", "--multimask", "--out", str(tmp_path / "mask.png"), "--overlay",
                  str(tmp_path / "overlay.png"), "--image-size", str(SIZE), "--backend", backend)
    assert r.returncode == 0, r.stderr[-3000:]
    predictor = SAM2ImagePredictor(build_sam2_model("sam2.1_hiera_t", image_size=SIZE))
    predictor._bb_feat_sizes = [(SIZE // 4,) * 2, (SIZE // 8,) * 2, (SIZE // 16,) * 2]  # Meta assumes 1024 px
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(point_coords=np.array([[60, 50], [5, 5]], np.float32),
                                         point_labels=np.array([1, 0]), box=np.array([30, 20, 130, 100]),
                                         multimask_output=True)
    printed = [float(x) for x in re.findall(r"mask-\d\.png  score (\d\.\d+)", r.stdout)]
    assert len(printed) == 3, r.stdout
    for rank, i in enumerate(np.argsort(-scores)):
        got, want = np.array(Image.open(tmp_path / f"mask-{rank}.png")) > 127, masks[i] > 0
        assert got.shape == (H, W) and want.any()
        if backend == "torch":
            assert np.array_equal(got, want)
            assert f"mask-{rank}.png  score {scores[i]:.3f}" in r.stdout
        else:
            assert (got & want).sum() / (got | want).sum() >= 0.98, rank
            assert abs(printed[rank] - scores[i]) <= 0.02, (printed, scores)
    assert np.array(Image.open(tmp_path / "overlay.png")).shape == (H, W, 3)
    r = _samtrack("segment", str(tmp_path / "img.png"), "--point", "500,5", "--image-size", str(SIZE))
    assert r.returncode == 2 and "outside the frame" in r.stderr
    r = _samtrack("segment", str(tmp_path / "none.png"), "--point", "5,5")
    assert r.returncode == 2 and "image not found" in r.stderr


def test_detections_work_with_supervisions_default_annotators():
    import supervision as sv

    from tracker.client import Result, to_detections

    masks = {3: np.zeros((60, 80), bool), 5: np.zeros((60, 80), bool)}
    masks[3][10:30, 20:50] = True
    masks[5][35:55, 50:75] = True
    header = {"objects": [{"id": 3, "bbox": [20, 10, 49, 29], "score": 2.0},
                          {"id": 5, "bbox": [50, 35, 74, 54], "score": -1.0},
                          {"id": 7, "bbox": None, "score": -3.0}]}
    d = to_detections(Result(header, {**masks, 7: np.zeros((60, 80), bool)}))
    assert list(d.tracker_id) == [3, 5] and list(d.class_id) == [3, 5] and len(d) == 2
    assert np.allclose(d.confidence, [1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(1.0))])
    image = np.zeros((60, 80, 3), np.uint8)
    for annotator in (sv.MaskAnnotator(), sv.BoxAnnotator(), sv.LabelAnnotator()):
        image = annotator.annotate(image.copy(), d)
    assert image[masks[3]].mean() > 30 and image[masks[5]].mean() > 30
    assert not np.array_equal(image[masks[3]].mean(axis=0), image[masks[5]].mean(axis=0))  # one colour each
    assert len(to_detections(Result({"objects": []}, {}))) == 0


def test_key_frames_every_n_carry_the_models_masks_between(video, tmp_path):
    """--key-frame-every 4: the model on frames 0, 4, 8 (and on the prompted frame 5), masks moved by motion on the
    others, each line saying which and from which key frame; key frames' masks are the model's own."""
    out = tmp_path / "keys.jsonl"
    r = _samtrack("track", str(video), "--box", ",".join(map(str, BOX)), "--frame", "5", "--object", "2",
                  "--point", ",".join(map(str, POINT)), "--masks", str(out), "--image-size", str(SIZE),
                  "--precision", "fp32", "--key-frame-every", "4", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    records = _records(out)
    assert [x["frame"] for x in records] == list(range(N))
    model = [x["frame"] for x in records if x["source"] == "model"]
    assert model == [0, 4, 5, 8]
    key = 0
    for x in records:
        key = x["frame"] if x["source"] == "model" else key
        assert x["key_frame"] == key, x["frame"]
    assert {o["id"] for o in records[6]["objects"]} == {1, 2}  # carried from the prompted frame 5
    bad = _samtrack("track", str(video), "--box", "1,1,9,9", "--masks", str(out), "--key-frame-every", "0")
    assert bad.returncode == 2 and "--key-frame-every" in bad.stderr
