"""Prompts on given frames: from command-line flags in the order typed, or from a JSON file."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, StrictInt, ValidationError

from ..errors import PromptError


@dataclass
class Prompt:
    """Everything given for one object on one frame: clicks (1 positive, 0 negative) and/or a box."""

    frame: int
    obj: int
    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: list[float] | None = None


def plan_from_flags(events: list[tuple[str, object]]) -> list[Prompt]:
    """Flags in the order typed: --frame F and --object N set where the following --point X,Y[,L] and
    --box X0,Y0,X1,Y1 go (frame 0, object 1 until given)."""
    frame, obj = 0, 1
    prompts: dict[tuple[int, int], Prompt] = {}
    for kind, value in events:
        if kind == "frame":
            frame = value
        elif kind == "object":
            obj = value
        else:
            p = prompts.setdefault((frame, obj), Prompt(frame, obj))
            if kind == "point":
                x, y, label = value
                p.points.append([x, y])
                p.labels.append(label)
            elif p.box is not None:
                raise PromptError(f"two boxes for object {obj} on frame {frame}: give one (--object/--frame "
                                  "before a --box choose where it goes)")
            else:
                p.box = list(value)
    return sorted(prompts.values(), key=lambda p: (p.frame, p.obj))


def check_plan(prompts: list[Prompt], size: tuple[int, int] | None) -> None:
    """Every prompt's clicks and box as the tracker will check them, before any model loads: inside frames of
    `size` (width, height) where it is known, boxes with x0 < x1 and y0 < y1 always; PromptError saying which."""
    from ..core.prompts import check_box, check_points

    width, height = size or (math.inf, math.inf)
    for p in prompts:
        try:
            if p.points:
                check_points(p.points, p.labels, width, height)
            if p.box is not None:
                check_box(p.box, width, height)
        except PromptError as e:
            raise PromptError(f"object {p.obj} on frame {p.frame}: {e}") from None


class _PromptEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    frame: Annotated[StrictInt, Field(ge=0)] = 0
    object: Annotated[StrictInt, Field(ge=0)] = 1
    points: list[Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]] = []
    labels: list[StrictInt] = []
    box: Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)] | None = None


def plan_from_file(path: str | Path) -> list[Prompt]:
    """A JSON list of {"frame", "object", "points", "labels", "box"} (see README); PromptError if malformed."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError as e:
        raise PromptError(f"prompts file not found: {p}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PromptError(f"cannot read prompts file {p}: {e}") from e
    if not isinstance(raw, list):
        raise PromptError(f"{p}: expected a JSON list of prompts, got {type(raw).__name__}")
    prompts = []
    for i, item in enumerate(raw):
        try:
            e = _PromptEntry.model_validate(item)
        except ValidationError as err:
            where = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'entry'}: {x['msg']}" for x in err.errors()[:3])
            raise PromptError(f"{p}, prompt {i}: {where}") from err
        if not e.points and e.box is None:
            raise PromptError(f"{p}, prompt {i}: give points (with labels) or a box")
        prompts.append(Prompt(e.frame, e.object, [list(x) for x in e.points], list(e.labels), e.box))
    return sorted(prompts, key=lambda q: (q.frame, q.obj))
