"""What a path a user types must be: an existing file or directory to read, a file to write, a directory to
create or reuse. Each check raises PathError naming the path and saying what to do; `PathArg` makes a check an
argparse type, so a bad path ends the command (exit 2) before any model is built or any measurement starts."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .errors import SamtrackError


class PathError(SamtrackError):
    """A path that is empty, missing, of the wrong kind (a file for a directory or the reverse) or not writable:
    what is wrong (`problem`, naming the path) and what to do (`hint`)."""

    code = "bad_path"

    def __init__(self, problem: str, hint: str):
        super().__init__(f"{problem}: {hint}")
        self.problem, self.hint = problem, hint


def _q(path: str | os.PathLike) -> str:
    """A path as messages show it: quoted, so spaces stay visible."""
    return f"'{path}'"


def _with(hint: str) -> str:
    return f" ({hint})" if hint else ""


def _not_empty(text: str | os.PathLike, what: str, give: str) -> Path:
    if not str(text).strip():
        raise PathError(f"empty path for the {what}", f"give {give}")
    return Path(text)


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists (a file there means a file where a folder should be)."""
    return next(p for p in (path, *path.absolute().parents) if p.exists())


def check_file(text: str | os.PathLike, what: str = "file", hint: str = "") -> None:
    """An existing file to read; `hint` says where such a file comes from."""
    p = _not_empty(text, what, f"the path of an existing {what}")
    if p.is_dir():
        raise PathError(f"{_q(p)} is a directory, not a {what}", f"give the path of a {what} in it{_with(hint)}")
    if not p.exists():
        raise PathError(f"{what} not found: {_q(p)}", f"check the path, or give an existing {what}{_with(hint)}")
    if not os.access(p, os.R_OK):
        raise PathError(f"cannot read the {what} {_q(p)} (permission denied)", f"give a {what} you can read")


def check_dir(text: str | os.PathLike, what: str = "directory", hint: str = "") -> None:
    """An existing directory to read; `hint` says where such a directory comes from."""
    p = _not_empty(text, what, f"the path of an existing {what}")
    if p.exists() and not p.is_dir():
        raise PathError(f"{_q(p)} is a file, not a {what}", f"give the directory{_with(hint)}")
    if not p.exists():
        raise PathError(f"{what} not found: {_q(p)}", f"check the path, or give an existing directory{_with(hint)}")
    if not os.access(p, os.R_OK | os.X_OK):
        raise PathError(f"cannot read the {what} {_q(p)} (permission denied)", "give a directory you can read")


def check_file_to_write(text: str | os.PathLike, what: str = "output file", example: str = "out",
                        make_parents: bool = False) -> None:
    """A file to create or overwrite: not a directory, in a writable directory that exists (or, with make_parents,
    that can be created). `example`: a file name to suggest when a directory is given."""
    p = _not_empty(text, what, f"a file name to write, e.g. {example}")
    if p.is_dir():
        raise PathError(f"{_q(p)} is a directory, not a file", f"give a file name to write, e.g. {_q(p / example)}")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise PathError(f"cannot overwrite {_q(p)} (permission denied or read-only)", "give another path")
        return
    parent = p.absolute().parent
    where = _nearest_existing(parent)
    if not where.is_dir():
        raise PathError(f"cannot write {_q(p)}: {_q(where)} is a file, not a directory",
                        "give a path in a directory")
    if where != parent and not make_parents:
        raise PathError(f"output directory does not exist: {_q(p.parent)} (for {_q(p)})",
                        f"create it first (mkdir -p {_q(p.parent)}) or give a path in an existing directory")
    if not _writable(where):
        raise PathError(f"cannot write {_q(p)}: {_q(where)} is not writable (permission denied or read-only)",
                        "give a path in a directory you can write to")


def check_dir_to_write(text: str | os.PathLike, what: str = "directory") -> None:
    """A directory to create (with its parents) or to reuse: not an existing file, and writable."""
    p = _not_empty(text, what, "a directory to create or reuse")
    where = _nearest_existing(p)
    if not where.is_dir():
        hint = "give a directory to create or reuse, not an existing file"
        if where == p:
            raise PathError(f"{_q(p)} is a file, not a directory", hint)
        raise PathError(f"cannot create {_q(p)}: {_q(where)} is a file, not a directory", hint)
    if not _writable(where):
        verb = "write in" if where == p else "create"
        raise PathError(f"cannot {verb} {_q(p)}: {_q(where)} is not writable (permission denied or read-only)",
                        "give a directory you can write to")


@dataclass(frozen=True)
class PathArg:
    """An argparse type for a path option: the text unchanged once `check` accepts it, else argparse's error
    (the option named, exit 2). `kind` says what the option takes (tests/test_cli_paths.py sweeps each kind)."""

    kind: str
    check: Callable[[str], None]

    def __call__(self, text: str) -> str:
        try:
            self.check(text)
        except PathError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text


def existing_file(what: str = "file", hint: str = "") -> PathArg:
    return PathArg("file", partial(check_file, what=what, hint=hint))


def existing_dir(what: str = "directory", hint: str = "") -> PathArg:
    return PathArg("dir", partial(check_dir, what=what, hint=hint))


def file_to_write(what: str = "output file", example: str = "out", make_parents: bool = False) -> PathArg:
    """`example`: a file name the message suggests when a directory is given."""
    return PathArg("new_file_mkdir" if make_parents else "new_file",
                   partial(check_file_to_write, what=what, example=example, make_parents=make_parents))


def dir_to_write(what: str = "directory") -> PathArg:
    return PathArg("new_dir", partial(check_dir_to_write, what=what))
