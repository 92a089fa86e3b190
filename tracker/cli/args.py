"""Argument types shared by subcommands: clicks and boxes typed as comma-separated numbers; checkpoint and
CurveZMQ key files; the log level."""

from __future__ import annotations

import argparse

from ..paths import PathArg, PathError, check_file_to_write, existing_file

CHECKPOINT = existing_file("checkpoint file", "`samtrack weights download NAME` fetches Meta's")
KEY_FILE = existing_file("key file", "`samtrack keys generate` writes them")


def _check_video_to_write(text: str) -> None:
    from pathlib import Path

    from pipelines.outputs import FILE_CHAINS  # plain data: no GStreamer loaded before a model is

    check_file_to_write(text, "video file", "overlay.mp4")
    if Path(text).suffix.lower() not in FILE_CHAINS:
        raise PathError(f"samtrack writes no video of the extension of '{text}'",
                        f"give a name ending {', '.join(FILE_CHAINS)} (e.g. overlay.mp4)")


VIDEO_TO_WRITE = PathArg("new_video", _check_video_to_write)  # --out / --video: a video file samtrack can write


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default said once: added where its help does not say it already, never for an
    option without one (None) or a switch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def add_log_level(p: argparse.ArgumentParser, default: str | None) -> None:
    """--log-level, in any case."""
    p.add_argument("--log-level", default=default, type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log messages of this level and above" + (f" (default: {default})" if default else
                                                                   " (default: the config's [logging] level)"))


def image_size(text: str) -> int:
    """--image-size: a size the model takes (checked as it is parsed, before any model loads)."""
    from ..models.registry import image_size_problem

    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if (problem := image_size_problem(size)) is not None:
        raise argparse.ArgumentTypeError(problem)
    return size


def numbers(text: str, counts: tuple[int, ...], what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from e
    if len(vals) not in counts:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return vals


def point(text: str) -> tuple[float, float, int]:
    vals = numbers(text, (2, 3), "X,Y or X,Y,LABEL (LABEL 1 positive, 0 negative)")
    label = vals[2] if len(vals) == 3 else 1
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(f"a point's label is 1 (positive) or 0 (negative), got {text!r}")
    return vals[0], vals[1], int(label)


def pair(text: str) -> list[float]:
    """X,Y."""
    return numbers(text, (2,), "X,Y")


def box(text: str) -> list[float]:
    return numbers(text, (4,), "X0,Y0,X1,Y1")
