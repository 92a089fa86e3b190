"""The model's timeline: the positions Meta's arithmetic reads (memory slots t-1..t-6, pointer distances), one
per frame the model ran on, apart from the frame numbers a stream gives every answered frame.

When the model runs on every frame, position and number go together. When frames between key frames are answered
by motion (tracker/motion/), the model sees the key frames as a video of their own, positions 0, 1, 2, ...: its
results on them are exactly Meta's predictor's on that video. A frame answered by motion that a prompt names
joins the model's timeline in its place: the positions after it move up by one (`shift_after`)."""

from __future__ import annotations

from collections import OrderedDict

from .bank import FrameFeatures, MemoryEntry, ObjectBank


def shift_after(window: OrderedDict[int, FrameFeatures], banks: list[ObjectBank], after: int,
                by: int = 1) -> OrderedDict[int, FrameFeatures]:
    """Every position after `after` moved by `by` (1: a frame joins after `after`; -1 undoes it), in the window
    (returned, in order) and in every bank (in place, each dict's order kept: Meta's concatenation order decides
    the last bits)."""
    moved = OrderedDict()
    for pos, f in window.items():
        if pos > after:
            pos += by
            f.index, f.index_tensor = pos, f.index_tensor + by
        moved[pos] = f
    seen: set[int] = set()
    for bank in banks:
        for name in ("cond", "non_cond", "pending_cond", "pending_non_cond"):
            shifted = {_moved(t, after, by): _shift_entry(e, after, by, seen) for t, e in getattr(bank, name).items()}
            setattr(bank, name, shifted)
        bank.points = {_moved(t, after, by): p for t, p in bank.points.items()}
        bank.tracked = {_moved(t, after, by) for t in bank.tracked}
    return moved


def _moved(t: int, after: int, by: int) -> int:
    return t + by if t > after else t


def _shift_entry(e: MemoryEntry, after: int, by: int, seen: set[int]) -> MemoryEntry:
    """An entry's own position moved (once, however many dicts hold it)."""
    if e.frame_index > after and id(e) not in seen:
        seen.add(id(e))
        e.frame_index += by
        e.frame_tensor = e.frame_tensor + by
    return e
