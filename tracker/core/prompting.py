"""Prompts on a streaming tracker: clicks, boxes and masks on any frame of the window (a frame answered by motion
joins the model's timeline first: `insert_frame`), objects removed and reset. Part of `Tracker`
(tracker/core/tracker.py), which holds the state these methods read and change."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from ..errors import FrameWindowError, PromptError, TooManyObjectsError, UnknownObjectError
from .bank import FrameFeatures, ObjectBank, PointPrompt
from .precision import compute_context
from .preprocess import check_frame
from .prompts import (
    MAX_FRAME_POINTS,
    check_box,
    check_mask,
    check_object_id,
    check_points,
    to_mask_input,
    to_point_prompt,
)
from .results import FrameResult, make_result
from .timeline import shift_after


class Prompting:
    """The prompt side of `Tracker` (a mixin: the tracker's window, banks and model are its state)."""

    @torch.inference_mode()
    def add_points(self, obj_id: int, points, labels, frame_index: int | None = None,
                   clear_old_points: bool = True) -> FrameResult:
        """Positive (1) / negative (0) clicks in frame pixels (x, y) for a new or existing object."""
        feats = self._prompt_frame(frame_index)
        pts, lab = check_points(points, labels, feats.width, feats.height)
        prompt = to_point_prompt(pts, lab, None, feats.width, feats.height, self.image_size, self.device)
        return self._add_prompt(check_object_id(obj_id), feats, prompt=prompt, clear_old_points=clear_old_points)

    @torch.inference_mode()
    def add_box(self, obj_id: int, box, frame_index: int | None = None,
                points=None, labels=None) -> FrameResult:
        """A box (x0, y0, x1, y1) in frame pixels, optionally with clicks, for a new or existing object."""
        feats = self._prompt_frame(frame_index)
        b = check_box(box, feats.width, feats.height)
        pts, lab = (None, None) if points is None else check_points(points, labels, feats.width, feats.height)
        prompt = to_point_prompt(pts, lab, b, feats.width, feats.height, self.image_size, self.device)
        return self._add_prompt(check_object_id(obj_id), feats, prompt=prompt)

    @torch.inference_mode()
    def add_mask(self, obj_id: int, mask, frame_index: int | None = None, retrack: bool = True) -> FrameResult:
        """A binary HxW mask at frame resolution for a new or existing object. On a past frame the object is
        re-tracked to the latest frame, unless `retrack` is False: it is then tracked from the next frame on, from
        its memory of this one (its results on the frames between stay as they were)."""
        feats = self._prompt_frame(frame_index)
        m = check_mask(mask, feats.width, feats.height)
        return self._add_prompt(check_object_id(obj_id), feats, mask=to_mask_input(m, self.image_size, self.device),
                                retrack=retrack)

    @torch.inference_mode()
    def masks_from_boxes(self, frame_number: int, boxes) -> list[np.ndarray | None]:
        """SAM's mask (HxW bool) from each box (x0, y0, x1, y1) on a frame of the window, as for a new object
        prompted by that box alone, changing nothing (no object, memory or frame is kept); None for a box that is
        no prompt (empty, or outside the frame). FrameWindowError for a frame no longer in the window."""
        feats = self._prompt_frame(frame_number)
        low_res = {}
        with compute_context(self.precision, self.device):
            for i, box in enumerate(boxes):
                try:
                    b = check_box(box, feats.width, feats.height)
                except PromptError:
                    continue
                prompt = to_point_prompt(None, None, b, feats.width, feats.height, self.image_size, self.device)
                entry = self._track(ObjectBank(-1), feats, is_init_cond=True, prompt=prompt, run_mem_encoder=False)
                low_res[i] = (entry.pred_masks, entry.object_score_logits)
            result = make_result(feats.number, low_res, feats.height, feats.width)
        return [result.objects[i].mask if i in result.objects else None for i in range(len(boxes))]

    def check_prompt(self, obj_id: int, width: int, height: int, points=None, labels=None, box=None,
                     mask=None) -> None:
        """Raise what add_points / add_box / add_mask would raise for this prompt on a frame of this size, changing
        nothing (a frame that must first join the model's timeline is checked before it does)."""
        self._check_room(check_object_id(obj_id))
        if box is not None:
            check_box(box, width, height)
        if points is not None or labels is not None:
            check_points(points, labels, width, height)
        if mask is not None:
            check_mask(mask, width, height)

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object and forget its memory."""
        if obj_id not in self._banks:
            raise UnknownObjectError(f"unknown object {obj_id!r}; tracked objects: {self.objects}")
        del self._banks[obj_id]
        self.state_version += 1

    def reset(self) -> None:
        """Forget every object. Frame indices and the feature window carry on."""
        self._banks.clear()
        self.state_version += 1

    @torch.inference_mode()
    def insert_frame(self, number: int, frame: np.ndarray) -> FrameResult:
        """A frame answered elsewhere (by motion) between two model frames of the window joins the model's timeline
        in its place: encoded, every object that has memory before it tracked on it, later positions moved up by
        one (core/timeline.py); prompts may then name it. Objects' results on later frames stay as they are (as for
        a prompt on a past frame, only a prompted object is re-tracked)."""
        frame = check_frame(frame)
        if not self._window or not self._window[next(iter(self._window))].number < number < self._latest_number:
            raise FrameWindowError(f"frame {number} is not between the oldest and the newest frame of the window "
                                   f"{self._span_text()}: only a frame inside the window can join it")
        if number in self.window:
            raise FrameWindowError(f"frame {number} is already a model frame")
        before = max(pos for pos, f in self._window.items() if f.number < number)
        banks = list(self._banks.values())
        self._window = shift_after(self._window, banks, before)  # a free position after `before`
        try:
            with compute_context(self.precision, self.device):
                backbone_out = self.encoder(self.preprocess(frame))
                feats = self._encode(backbone_out, frame.shape[0], frame.shape[1], before + 1, number)
                for bank in banks:
                    self._flush(bank)
                known = [b for b in banks if any(t <= before for d in (b.cond, b.non_cond) for t in d)]
                entries = self._track_objects(known, feats, is_init_cond=False, run_mem_encoder=True) if known else []
        except BaseException:
            self._window = shift_after(self._window, banks, before + 1, -1)  # as it was
            raise
        self._window[feats.index] = feats
        self._window = OrderedDict(sorted(self._window.items()))
        self._latest += 1
        for bank, entry in zip(known, entries):
            bank.non_cond[feats.index] = entry
            bank.tracked.add(feats.index)
        while len(self._window) > self.options.feature_window:
            self._window.popitem(last=False)
        return self._result(feats)

    def _prompt_frame(self, frame_index: int | None) -> FrameFeatures:
        if not self._window:
            raise FrameWindowError("no frame yet: call step(frame) before prompting")
        if frame_index is None:
            return self._window[self._latest]
        k = frame_index
        found = None
        if not isinstance(k, bool) and isinstance(k, (int, np.integer)):
            found = next((f for f in self._window.values() if f.number == int(k)), None)
        if found is None:
            raise FrameWindowError(
                f"frame {frame_index!r} is not in the feature window {self._span_text()}: prompt a "
                f"recent frame, or raise feature_window (now {self.options.feature_window})"
            )
        return found

    def _add_prompt(self, obj_id: int, feats: FrameFeatures, prompt: PointPrompt | None = None,
                    mask: torch.Tensor | None = None, clear_old_points: bool = True,
                    retrack: bool = True) -> FrameResult:
        k = feats.index
        self._check_room(obj_id)
        bank = self._banks.get(obj_id) or ObjectBank(obj_id)
        if prompt is not None and not clear_old_points and k in bank.points:
            old = bank.points[k]
            prompt = PointPrompt(torch.cat([old.coords, prompt.coords], 1), torch.cat([old.labels, prompt.labels], 1))
        if prompt is not None and prompt.coords.shape[1] > MAX_FRAME_POINTS:
            raise PromptError(f"object {obj_id} would have {prompt.coords.shape[1]} points (box corners count two) "
                              f"on frame {k}; at most {MAX_FRAME_POINTS}: give fewer, or replace the old ones "
                              "(clear_old_points)")
        is_init_cond = k not in bank.tracked
        is_cond = is_init_cond or self.options.add_all_frames_to_correct_as_cond
        pending = bank.pending_cond if is_cond else bank.pending_non_cond
        prev_logits = None
        if prompt is not None:  # Meta feeds the previous mask of this frame along with new clicks
            prev = next((d[k] for d in (pending, bank.cond, bank.non_cond) if k in d), None)
            if prev is not None:
                prev_logits = torch.clamp(prev.pred_masks, -32.0, 32.0)
        with compute_context(self.precision, self.device):
            entry = self._track(bank, feats, is_init_cond, prompt=prompt, mask=mask,
                                prev_logits=prev_logits, run_mem_encoder=False)
            # Commit only now: a failure above leaves the state as it was.
            pending[k] = entry
            self.state_version += is_cond
            if prompt is not None:
                bank.points[k] = prompt
            else:
                bank.points.pop(k, None)
            self._banks[obj_id] = bank
            if k < self._latest and retrack:
                self._retrack(bank, k)
        return self._result(feats)

    def _check_room(self, obj_id: int) -> None:
        """A new object id beyond max_objects is refused."""
        if obj_id not in self._banks and len(self._banks) >= self.options.max_objects:
            raise TooManyObjectsError(
                f"already tracking {len(self._banks)} objects, the most this tracker takes (max_objects): remove "
                f"one first (remove_object), or raise max_objects ([memory] max_objects)")

    def _retrack(self, bank: ObjectBank, k: int) -> None:
        """Re-track one object from frame k+1 to the latest frame from cached features.

        Only the prompted object is re-tracked: objects are independent in SAM2, so the others'
        results are unchanged (their pending prompts stay pending, unlike Meta's propagate).
        """
        self._flush(bank)
        self.retracked_frames += self._latest - k
        for j in range(k + 1, self._latest + 1):
            bank.tracked.add(j)
            if j in bank.cond:  # prompted frames keep their prompt output, as in Meta's propagate
                continue
            bank.non_cond[j] = self._track(bank, self._window[j], is_init_cond=False, run_mem_encoder=True)
        bank.prune(self._oldest_kept(), self.options.max_cond_frames)
