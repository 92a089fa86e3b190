"""Drive samtrack and Meta's SAM2VideoPredictor through the same causal session and collect outputs.

A session is a list of frames and prompts. A prompt is issued when frame `at` is the latest frame
and names frame `frame` <= `at`. Meta's predictor is driven causally: it never sees a frame before
samtrack would, prompts on tracked frames restart propagation at frame+1 (Meta's issue #731), and
every propagate call stops at the latest frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from tracker import Tracker


@dataclass(frozen=True)
class Prompt:
    at: int  # latest frame when the prompt is issued
    obj: int
    frame: int | None = None  # frame the prompt names (default: `at`)
    points: tuple | None = None  # ((x, y), ...)
    labels: tuple | None = None
    box: tuple | None = None
    mask: np.ndarray | None = field(default=None, compare=False)
    clear_old_points: bool = True

    @property
    def target(self) -> int:
        return self.at if self.frame is None else self.frame


Outputs = dict[int, dict[int, torch.Tensor]]  # frame -> obj id -> HxW logits


def run_samtrack(tracker: Tracker, frames: list[np.ndarray], prompts: list[Prompt]) -> Outputs:
    out: Outputs = {}
    for i, frame in enumerate(frames):
        res = tracker.step(frame)
        out[i] = {k: torch.from_numpy(o.logits) for k, o in res.objects.items()}
        for p in (p for p in prompts if p.at == i):
            if p.mask is not None:
                res = tracker.add_mask(p.obj, p.mask, frame_index=p.target)
            elif p.box is not None:
                res = tracker.add_box(p.obj, p.box, frame_index=p.target, points=p.points, labels=p.labels)
            else:
                res = tracker.add_points(p.obj, p.points, p.labels, frame_index=p.target,
                                         clear_old_points=p.clear_old_points)
            assert res.frame_index == p.target
            out[p.target] = {k: torch.from_numpy(o.logits) for k, o in res.objects.items()}
            for j in range(p.target + 1, i + 1):  # frames re-tracked after a prompt on a past frame
                out[j] = {k: torch.from_numpy(o.logits) for k, o in tracker.result(j).objects.items()}
    return out


def run_meta(predictor, video_dir: str, n_frames: int, prompts: list[Prompt]) -> Outputs:
    state = predictor.init_state(video_dir)
    out: Outputs = {}
    cursor = 0  # next frame Meta has not tracked yet

    def propagate(start: int, stop: int) -> None:
        if start > stop or not state["obj_ids"]:
            return
        for f, ids, masks in predictor.propagate_in_video(state, start_frame_idx=start,
                                                           max_frame_num_to_track=stop - start):
            out[f] = {i: masks[k, 0] for k, i in enumerate(ids)}

    for at in sorted({p.at for p in prompts}):
        propagate(cursor, at)
        group = [p for p in prompts if p.at == at]
        for p in group:
            if p.mask is not None:
                f, ids, masks = predictor.add_new_mask(state, p.target, p.obj, p.mask)
            else:
                f, ids, masks = predictor.add_new_points_or_box(
                    state, p.target, p.obj,
                    points=None if p.points is None else np.array(p.points, np.float32),
                    labels=None if p.labels is None else np.array(p.labels, np.int32),
                    box=None if p.box is None else np.array(p.box, np.float32),
                    clear_old_points=p.clear_old_points,
                )
            out[f] = {i: masks[k, 0] for k, i in enumerate(ids) if _has_output(state, i, f)}
        earliest = min(p.target for p in group)
        propagate(earliest + 1, at)  # re-track the frames after a prompt on a past frame
        cursor = at + 1
    propagate(cursor, n_frames - 1)
    return out


def _has_output(state, obj_id, frame) -> bool:
    """Whether Meta holds a real output (not its placeholder) for this object on this frame."""
    idx = state["obj_id_to_idx"][obj_id]
    dicts = [state["temp_output_dict_per_obj"][idx], state["output_dict_per_obj"][idx]]
    return any(frame in d[k] for d in dicts for k in ("cond_frame_outputs", "non_cond_frame_outputs"))


def compare(ours: Outputs, ref: Outputs) -> list[str]:
    """Differences between two sessions' outputs, empty when bit-identical."""
    problems = []
    for f in sorted(set(ours) | set(ref)):
        a, b = ours.get(f, {}), ref.get(f, {})
        if set(a) != set(b):
            problems.append(f"frame {f}: objects {sorted(a)} vs Meta {sorted(b)}")
            continue
        for i in a:
            if not torch.equal(a[i], b[i]):
                d = (a[i] - b[i]).abs().max().item()
                problems.append(f"frame {f} object {i}: max abs diff {d:.3g}")
    return problems
