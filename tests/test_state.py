"""A tracker's state across a restart, in process: restoring is exact (bit for bit against a tracker rebuilt
from the same conditioning memories), files that do not fit are set aside, a write cut short by a kill leaves
the old state, a full disk is counted, and frame numbers never repeat. The daemon: tests/test_restart.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_model
from tracker import FrameWindowError, Tracker
from tracker.core.state import StateError, decode_state, encode_state, read_meta
from tracker.daemon.statedir import LEASE_FRAMES, StateStore

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {"model": "sam2.1_hiera_t", "weights_sha256": "w" * 64, "image_size": 64, "precision": "fp32",
            "stream": "cam", "samtrack": "test"}


@pytest.fixture(scope="module")
def model():
    return make_model(image_size=64)  # small: restoring is about the bank, not the picture


def _prompted(model, frames) -> Tracker:
    """Two objects, one corrected on a past frame, a few frames tracked, a prompt pending on the latest."""
    t = Tracker.from_sam2(model, precision="fp32")
    for i, f in enumerate(frames[:8]):
        t.step(f)
        if i == 1:
            t.add_box(1, [20, 15, 70, 60])
        if i == 4:
            t.add_points(2, [[90, 60]], [1])
        if i == 6:
            t.add_points(1, [[40, 30], [10, 10]], [1, 0], frame_index=4)  # a past frame: re-tracked from there
    t.add_points(2, [[92, 62]], [1])  # on the latest frame: its memory is not encoded yet
    return t


def _logits(results) -> list[dict[int, np.ndarray]]:
    return [{k: o.logits for k, o in r.objects.items()} for r in results]


def test_restoring_is_exact(model, video):
    """The state through its bytes and back equals the same conditioning memories handed over in process, on the
    same frames, bit for bit; objects, frame numbers and the memories' order survive."""
    from tracker.core.bank import ObjectBank

    _, frames = video
    live = _prompted(model, frames)
    data = encode_state(live.snapshot(), IDENTITY)
    meta, tensors = read_meta(data)
    restored = Tracker.from_sam2(model, precision="fp32")
    restored.restore(decode_state(meta, tensors, restored.device))
    # The same conditioning memories handed over by hand, without snapshot() or restore(): the live banks'
    # prompted frames (the pending prompt's memory encoded as the next step would), no recent memory, no window.
    rebuilt = Tracker.from_sam2(model, precision="fp32")
    with torch.inference_mode():
        for bank in live._banks.values():
            live._encode_pending(bank.pending_cond)
    rebuilt._banks = {i: ObjectBank(i, cond={**b.cond, **b.pending_cond}, cond_dropped=b.cond_dropped)
                      for i, b in live._banks.items()}
    rebuilt._latest, rebuilt._maskmem_pos = live._latest, live._maskmem_pos
    snapshot = live.snapshot()
    assert restored.objects == rebuilt.objects == live.objects == [1, 2]
    assert [list(o.cond) for o in decode_state(meta, tensors, "cpu").objects] == [list(o.cond) for o in
                                                                                   snapshot.objects]
    a = [restored.step(f) for f in frames[8:16]]
    b = [rebuilt.step(f) for f in frames[8:16]]
    assert [r.frame_index for r in a] == list(range(8, 16))  # frame numbers go on where they stopped
    for x, y in zip(_logits(a), _logits(b), strict=True):
        assert x.keys() == {1, 2} and all(np.array_equal(x[k], y[k]) for k in x)
    assert not np.array_equal(a[0].objects[1].logits, live.step(frames[8]).objects[1].logits)  # recent memory
    with pytest.raises(FrameWindowError):  # a frame from before the restart cannot be prompted
        restored.add_points(1, [[10, 10]], [1], frame_index=7)


_OPEN: list[StateStore] = []


@pytest.fixture(autouse=True)
def _close_stores():
    """Each test's stores release their directory (as a daemon that ends does)."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def _store(tmp_path, model, **identity) -> tuple[StateStore, Tracker]:
    t = Tracker.from_sam2(model, precision="fp32")
    _OPEN.append(store := StateStore(tmp_path, "cam", {**IDENTITY, **identity}))
    return store, t


def test_a_saved_state_loads_after_a_restart_and_numbers_never_repeat(model, video, tmp_path):
    _, frames = video
    store, live = _store(tmp_path, model)
    store.load_into(live)
    for i, f in enumerate(frames[:5]):
        live.step(f)
        store.reserve(i + 1)
        if i == 2:
            live.add_box(1, [20, 15, 70, 60])
            store.save(live)
    assert store.report.writes == 1 and store.report.last_bytes > 0
    with pytest.raises(StateError, match="another samtrack daemon keeps stream 'cam'"):
        _store(tmp_path, model)[0].load_into(Tracker.from_sam2(model, precision="fp32"))  # a second daemon
    store.close()  # the first one ends
    again, fresh = _store(tmp_path, model)
    again.load_into(fresh)  # the restart
    assert fresh.objects == [1] and again.report.restored_objects == [1]
    first = fresh.step(frames[5]).frame_index
    assert first >= LEASE_FRAMES and again.report.restored_frame == first  # past every number handed out
    assert 1 in fresh.step(frames[6]).objects


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other weights", "other size", "other precision"])
def test_a_state_that_does_not_fit_is_set_aside(model, video, tmp_path, damage, caplog):
    _, frames = video
    store, live = _store(tmp_path, model)
    live.step(frames[0])
    store.reserve(1)  # as the daemon does after each frame
    live.add_box(1, [20, 15, 70, 60])
    store.save(live)
    data = store.path.read_bytes()
    if damage == "garbage":
        store.path.write_bytes(os.urandom(len(data)))
    elif damage == "truncated":
        store.path.write_bytes(data[: len(data) // 2])
    identity = {"other weights": {"weights_sha256": "v" * 64}, "other size": {"image_size": 256},
                "other precision": {"precision": "bf16"}}.get(damage, {})
    again, fresh = _store(tmp_path, model, **identity)
    with caplog.at_level(logging.ERROR, logger="tracker.daemon.statedir"):
        again.load_into(fresh)  # never raises: the stream starts empty
    assert fresh.objects == [] and again.report.restored_objects is None
    kept = list(tmp_path.glob("cam.state.set-aside-*"))
    assert len(kept) == 1 and kept[0].stat().st_size > 0 and not store.path.exists()
    assert "refused" in caplog.text and kept[0].name in caplog.text
    if damage.startswith("other"):
        assert damage.split()[1] in caplog.text.replace("weights_sha256", "weights").replace("image_size", "size")
    assert fresh.step(frames[1]).frame_index >= LEASE_FRAMES  # numbering still continues past the reservation


def test_a_state_with_a_memory_of_another_shape_is_refused(model, video):
    _, frames = video
    live = _prompted(model, frames)
    other = Tracker.from_sam2(make_model(image_size=96), precision="fp32")
    with pytest.raises(StateError, match="does not fit"):
        other.restore(live.snapshot())


@pytest.mark.slow  # a second interpreter loads torch
def test_a_kill_between_write_and_rename_leaves_the_old_state(model, video, tmp_path):
    """A real process killed (SIGKILL) inside the state write, after the new bytes are written and before the
    rename: the old state is what loads; the half-done temporary file is ignored and replaced next time."""
    _, frames = video
    store, live = _store(tmp_path, model)
    live.step(frames[0])
    live.add_box(1, [20, 15, 70, 60])
    store.save(live)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.conftest import make_model
        from tests.test_state import IDENTITY
        from tracker import Tracker
        from tracker.daemon.statedir import StateStore
        from pathlib import Path
        import numpy as np
        t = Tracker.from_sam2(make_model(image_size=64), precision="fp32")
        t.step(np.zeros((96, 128, 3), np.uint8))
        t.add_box(7, [20, 15, 70, 60])
        t.add_box(8, [30, 15, 80, 60])
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # dies between write and rename
        StateStore(Path({str(tmp_path)!r}), "cam", IDENTITY).save(t)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == -9, r.stderr[-3000:]
    assert (tmp_path / ".cam.state.tmp").stat().st_size > 0  # the new state was written, never renamed
    again, fresh = _store(tmp_path, model)
    again.load_into(fresh)
    assert fresh.objects == [1]  # the old state, whole
    fresh.step(frames[1])
    fresh.add_points(3, [[90, 60]], [1])
    again.save(fresh)
    assert not (tmp_path / ".cam.state.tmp").exists() and again.report.writes == 1


def test_a_full_disk_keeps_tracking_and_counts_the_failed_write(model, video, tmp_path, caplog):
    _, frames = video
    store, live = _store(tmp_path, model)
    (tmp_path / ".cam.state.tmp").symlink_to("/dev/full")  # every write there: ENOSPC
    live.step(frames[0])
    live.add_box(1, [20, 15, 70, 60])
    with caplog.at_level(logging.ERROR, logger="tracker.daemon.statedir"):
        store.save(live)
    assert store.report.write_errors == 1 and store.report.writes == 0 and "No space left" in caplog.text
    assert set(live.step(frames[1]).objects) == {1}


def test_snapshot_leaves_the_live_tracker_as_it_was(model, video):
    """Encoding a pending prompt's memory for the snapshot computes what the next step would: the live tracker's
    results after a snapshot equal a twin's that took none."""
    _, frames = video
    a, b = _prompted(model, frames), _prompted(model, frames)
    a.snapshot()
    for f in frames[8:11]:
        ra, rb = a.step(f), b.step(f)
        assert all(torch.equal(torch.from_numpy(ra.objects[k].logits), torch.from_numpy(rb.objects[k].logits))
                   for k in ra.objects)


def _many_objects_store(tmp_path, model, frames, n: int, max_objects: int) -> StateStore:
    """A stream with `max_objects` that holds `n` objects (clicks on a grid), its state saved."""
    live = Tracker.from_sam2(model, precision="fp32", max_objects=max_objects)
    _OPEN.append(store := StateStore(tmp_path, "cam", IDENTITY))
    store.load_into(live)
    live.step(frames[0])
    store.reserve(1)
    for i in range(n):
        live.add_points(i + 1, [[4 + (i % 8) * 15, 4 + (i // 8) * 15]], [1])
    store.save(live)
    assert store.report.writes == 1 and len(live.objects) == n
    store.close()
    return store


def test_a_state_over_the_default_object_cap_restores_with_the_streams_own_cap(model, video, tmp_path):
    """`serve --state D --max-objects 40` with 33 objects comes back with 33 (the check once probed with the
    default options, whose cap is 32, and refused the daemon's start)."""
    _, frames = video
    _many_objects_store(tmp_path, model, frames, 33, 40)
    again = Tracker.from_sam2(model, precision="fp32", max_objects=40)
    _OPEN.append(store := StateStore(tmp_path, "cam", IDENTITY))
    store.load_into(again)
    assert again.objects == list(range(1, 34)) and store.report.set_aside == []
    assert set(again.step(frames[1]).objects) == set(range(1, 34))


def test_a_state_over_a_lowered_object_cap_is_set_aside(model, video, tmp_path, caplog):
    """The same state into a stream whose max_objects is now 8: set aside with a line saying to raise it, the
    stream starts (it once raised TooManyObjectsError out of the daemon's start)."""
    _, frames = video
    _many_objects_store(tmp_path, model, frames, 33, 40)
    again = Tracker.from_sam2(model, precision="fp32", max_objects=8)
    _OPEN.append(store := StateStore(tmp_path, "cam", IDENTITY))
    with caplog.at_level(logging.ERROR, logger="tracker.daemon.statedir"):
        store.load_into(again)
    assert again.objects == [] and len(store.report.set_aside) == 1
    assert "33 objects" in caplog.text and "max_objects" in caplog.text
    assert again.step(frames[1]).frame_index >= LEASE_FRAMES


def test_an_import_over_the_default_object_cap_is_taken(model, video, tmp_path):
    """import_state of 33 objects into a stream with max_objects 40 (once refused: the probe's cap was 32)."""
    _, frames = video
    data = _many_objects_store(tmp_path / "a", model, frames, 33, 40).path.read_bytes()
    target = Tracker.from_sam2(model, precision="fp32", max_objects=40)
    _OPEN.append(store := StateStore(tmp_path / "b", "cam", IDENTITY))
    store.load_into(target)
    target.step(frames[0])
    store.accept(data, target)
    assert target.objects == list(range(1, 34))


def _prompted_state(model, frames, **changes) -> bytes:
    """A real state's bytes (an object prompted on frame 0) with fields replaced by `changes`."""
    import dataclasses

    t = Tracker.from_sam2(model, precision="fp32")
    t.step(frames[0])
    t.add_box(1, [20, 15, 70, 60])
    return encode_state(dataclasses.replace(t.snapshot(), **changes), IDENTITY)


@pytest.mark.parametrize("field", ["next_frame past int64", "next_frame a float", "maskmem_pos in float64",
                                   "maskmem_pos in int32"])
def test_an_import_with_a_field_out_of_range_or_of_another_type_is_refused(model, video, tmp_path, field):
    """Such a state was taken and then failed every later step ("value cannot be converted to type int64_t",
    "mat1 and mat2 must have the same dtype"), across restarts; now it is refused, and the stream goes on."""
    _, frames = video
    pos = Tracker.from_sam2(model, precision="fp32")
    pos.step(frames[0])
    pos.add_box(1, [20, 15, 70, 60])
    maskmem_pos = pos.snapshot().maskmem_pos
    changes = {"next_frame past int64": {"next_frame": 2**63 + 5}, "next_frame a float": {"next_frame": 5.0},
               "maskmem_pos in float64": {"maskmem_pos": maskmem_pos.double()},
               "maskmem_pos in int32": {"maskmem_pos": maskmem_pos.int()}}[field]
    data = _prompted_state(model, frames, **changes)
    target = Tracker.from_sam2(model, precision="fp32")
    _OPEN.append(store := StateStore(tmp_path, "cam", IDENTITY))
    store.load_into(target)
    target.step(frames[0])
    with pytest.raises(StateError, match="next_frame|position encoding"):
        store.accept(data, target)
    assert target.objects == [] and not store.path.exists()  # nothing taken, nothing saved
    target.add_points(2, [[40, 30]], [1])
    assert set(target.step(frames[1]).objects) == {2}


def test_a_frame_reservation_past_the_frame_limit_is_set_aside(model, video, tmp_path):
    """A reservation file past any frame number a state may carry (once kept from such an import) is set aside:
    the stream starts, its numbering from 0."""
    _, frames = video
    (tmp_path / "cam.frames").write_text('{"reserved": 9223372036854775808}')
    store, t = _store(tmp_path, model)
    store.load_into(t)
    assert len(store.report.set_aside) == 1 and "cam.frames" in store.report.set_aside[0]
    assert t.step(frames[0]).frame_index == 0


class _FailingMemoryEncoder:
    """The model's memory encoder until armed, then the error a device gives (out of memory)."""

    def __init__(self, model):
        self.model, self.armed = model, False

    def __call__(self, **kwargs):
        if self.armed:
            raise RuntimeError("CUDA out of memory (the device, as the state is saved)")
        return self.model._encode_new_memory(**kwargs)


def test_a_failure_while_saving_the_state_is_counted_and_the_stream_goes_on(model, video, tmp_path, caplog):
    """Saving a state encodes the memory of pending prompts: a failure there (once it escaped Stream.accepted,
    which caught only OSError, and ended the daemon) is logged and counted; the stream keeps its objects."""
    from engines.base import Engines
    from pipelines.open import open_source
    from tracker.daemon.stream import Stream

    _, frames = video
    encoder = _FailingMemoryEncoder(model)
    t = Tracker.from_sam2(model, precision="fp32")
    t = Tracker(model, t.options, Engines.of(model, memory_encoder=encoder))
    _OPEN.append(store := StateStore(tmp_path, "cam", IDENTITY))
    store.load_into(t)
    stream = Stream("cam", open_source("test:"), t, state=store)
    t.step(frames[0])
    t.add_points(1, [[40, 30]], [1])  # pending: its memory is encoded when the state is made
    encoder.armed = True
    with caplog.at_level(logging.ERROR, logger="tracker.daemon.statedir"):
        stream.accepted(0, "add_points", {"object": 1}, [], {"frame": 0})
    assert store.report.write_errors == 1 and store.report.writes == 0 and "could not be made" in caplog.text
    encoder.armed = False
    assert set(t.step(frames[1]).objects) == {1}
    t.add_points(2, [[90, 60]], [1])
    stream.accepted(1, "add_points", {"object": 2}, [], {"frame": 1})
    assert store.report.writes == 1  # the next save goes through
