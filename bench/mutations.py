"""Mutation check: deliberate mistakes, each made in a scratch copy of the tree, and the fast test subset
(`pytest -m "not slow"`) must fail for every one. It guards the tests' power to notice the mistakes that matter
most here (docs/design.md, "What the tests guard"); a mistake the fast subset lets through fails this check.

Each mutation is an exact text replacement asserted to apply once, so a refactor that moves the code fails the
check loudly instead of letting it pass on code that no longer exists. Each mutation names the test files of the
fast subset meant to catch it; those run (fast subset marks, -x), and one of them must fail. Afterwards the tests
that caught them are run once on an unmutated copy and must pass (a test that fails anyway proves nothing).

    python -m bench.mutations [--only NAME ...] [--list]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 900  # one mutated fast subset; the whole subset takes ~5 min on a 2-core CPU, -x stops far sooner
# Tests of the tree's form, left out of the mutated runs: they would fail on a mutation's text (lint, the check's
# own test that each mutation applies), not on its behaviour.
FORM_TESTS = ("tests/test_lint.py", "tests/test_mutations.py")


@dataclass(frozen=True)
class Mutation:
    """`old` replaced by `new` in `path` (relative to the repository root); `tests` run first."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]

    def mutated(self, root: Path) -> str:
        """The file's text with the mistake in; MutationError unless the text to replace occurs exactly once."""
        text = (root / self.path).read_text()
        n = text.count(self.old)
        if n != 1:
            raise MutationError(f"{self.name}: the text to mutate occurs {n} times in {self.path} (expected once): "
                                "the code moved; update bench/mutations.py")
        return text.replace(self.old, self.new)

    def apply(self, root: Path) -> None:
        (root / self.path).write_text(self.mutated(root))


class MutationError(Exception):
    """A mutation that cannot be applied, or a tree that cannot be copied."""


# Adding one: a name, the file, the exact text and its replacement, the tests that should catch it.
MUTATIONS = [
    Mutation("request envelope accepts unknown fields", "tracker/protocol/requests.py",
             'class Envelope(BaseModel):\n    model_config = ConfigDict(extra="forbid", strict=True)',
             'class Envelope(BaseModel):\n    model_config = ConfigDict(extra="ignore", strict=True)',
             ("tests/test_requests.py", "tests/test_fuzz.py")),
    Mutation("points without labels (or labels without points) accepted", "tracker/protocol/requests.py",
             "if (points is None) != (labels is None):", "if False:", ("tests/test_requests.py",)),
    Mutation("bits masks read least significant bit first", "tracker/protocol/masks.py",
             "np.unpackbits(np.frombuffer(data, np.uint8))[: height * width]",
             'np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[: height * width]',
             ("tests/test_masks.py",)),
    Mutation("an RLE mask shorter than its size accepted", "tracker/protocol/masks.py",
             "if sum(counts) != height * width:", "if sum(counts) > height * width:", ("tests/test_masks.py",)),
    Mutation("topics matched by prefix (results.cam also takes results.cam2)", "tracker/protocol/base.py",
             "return received in (topic(RESULTS_TOPIC, stream), topic(PREVIEW_TOPIC, stream))",
             "return received.startswith((topic(RESULTS_TOPIC, stream), topic(PREVIEW_TOPIC, stream)))",
             ("tests/test_topics.py",)),
    Mutation("re-tracking for past-frame prompts unbounded per turn", "tracker/daemon/loop.py",
             "if self._retracked() - retracked_before >= RETRACK_FRAMES_PER_TURN:", "if False:",
             ("tests/test_daemon.py",)),
    Mutation("conditioning frames never evicted (the bank's cap)", "tracker/core/bank.py",
             "recent = set(sorted(self.cond)[-max_cond:])", "recent = set(self.cond)", ("tests/test_bounded.py",)),
    Mutation("recent memories never pruned (the bank's horizon)", "tracker/core/bank.py",
             "for t in [t for t in self.non_cond if t < oldest_kept]:", "for t in []:", ("tests/test_bounded.py",)),
    Mutation("another stream's end message dropped by a full publisher queue", "tracker/daemon/publisher.py",
             "            if isinstance(item, _Job):\n", "            if item is not None:\n",
             ("tests/test_publisher.py",)),
    Mutation("the viewer accepts pages of any origin", "tracker/viewer/origin.py",
             "if got == own or got in self.allowed:", "if True:", ("tests/test_viewer_access.py",)),
    Mutation("a new object beyond max_objects accepted", "tracker/core/prompting.py",
             "if obj_id not in self._banks and len(self._banks) >= self.options.max_objects:", "if False:",
             ("tests/test_bad_inputs.py",)),
    Mutation("masks carried between key frames left where the key frame had them", "tracker/motion/carrier.py",
             "moved = move_mask(c.mask, c.bbox, scaled(c.total, 1.0 / self.scale))",
             "moved = move_mask(c.mask, c.bbox, np.eye(3))", ("tests/test_motion.py",)),
    Mutation("a frame joining the model's timeline leaves later positions where they were",
             "tracker/core/timeline.py", "            pos += by\n", "", ("tests/test_timeline.py",)),
]


@dataclass
class Outcome:
    mutation: Mutation
    caught_by: list[str]  # the failed tests (-x: one)
    exit_code: int
    seconds: float

    @property
    def caught(self) -> bool:
        return self.exit_code == 1 and bool(self.caught_by)


def tracked_files(root: Path) -> list[str]:
    """The tree as a clean clone would have it, plus files not yet committed (git's view, ignored ones left out)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise MutationError(f"{root} is not a git checkout (the scratch copy is made of its files): {e}") from e
    return [f for f in out.decode().split("\0") if f and (root / f).is_file()]


def scratch_copy(root: Path, into: Path) -> Path:
    for f in tracked_files(root):
        (into / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, into / f)
    return into


def fast_subset(tree: Path, first: tuple[str, ...], *selection: str) -> subprocess.CompletedProcess:
    """`pytest -m "not slow" -x` in `tree`: the files in `first`, then every other test file but FORM_TESTS (or
    the tests in `selection`)."""
    rest = sorted(str(p.relative_to(tree)) for p in (tree / "tests").glob("test_*.py")
                  if str(p.relative_to(tree)) not in FORM_TESTS)
    files = list(selection) or [*first, *(f for f in rest if f not in first)]
    path = [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])]  # the copy's code, also in subprocesses
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.run([sys.executable, "-m", "pytest", "-m", "not slow", "-x", "-q", "-rfE", "-p",
                           "no:cacheprovider", *files], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)


def failed_tests(output: str) -> list[str]:
    """The failed tests of a pytest summary, as file::function (all of a parametrized test's cases)."""
    return re.findall(r"^(?:FAILED|ERROR) ([^\s\[]+)", output, flags=re.M)


def run_one(m: Mutation, work: Path) -> Outcome:
    tree = scratch_copy(ROOT, work / re.sub(r"\W+", "-", m.name)[:60])
    m.apply(tree)
    t0 = time.monotonic()
    r = fast_subset(tree, m.tests, *m.tests)  # its catching tests (of the fast subset) only: no full collection
    outcome = Outcome(m, failed_tests(r.stdout), r.returncode, time.monotonic() - t0)
    if r.returncode not in (0, 1):  # collection errors, interruptions: the copy did not run its tests
        raise MutationError(f"{m.name}: pytest exited {r.returncode} on the mutated copy:\n{r.stdout[-3000:]}"
                            f"{r.stderr[-2000:]}")
    shutil.rmtree(tree)
    return outcome


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", metavar="NAME", help="mutations whose name contains one of these words")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = p.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or any(w in m.name for w in args.only)]
    if args.list or not chosen:
        print("\n".join(f"{m.name}  ({m.path}; first: {', '.join(m.tests)})" for m in MUTATIONS))
        return 0 if chosen else 2
    try:
        return check(chosen)
    except MutationError as e:
        print(f"mutation check: {e}", file=sys.stderr)
        return 2


def check(chosen: list[Mutation]) -> int:
    """Runs the chosen mutations; 0 when the fast subset failed for each (and the catching tests pass unmutated)."""
    for m in chosen:  # every one applies, before any time is spent
        m.mutated(ROOT)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="samtrack-mutations-") as tmp:
        outcomes = []
        for m in chosen:
            outcomes.append(run_one(m, Path(tmp)))
            o = outcomes[-1]
            print(f"{'caught' if o.caught else 'SURVIVED'}  {m.name}  ({o.seconds:.0f} s"
                  f"{', by ' + ', '.join(o.caught_by) if o.caught_by else ''})", flush=True)
        catching = sorted({t for o in outcomes for t in o.caught_by})
        baseline = fast_subset(scratch_copy(ROOT, Path(tmp) / "unmutated"), (), *catching) if catching else None
    survived = [o.mutation.name for o in outcomes if not o.caught]
    if baseline is not None and baseline.returncode != 0:
        print(f"the catching tests do not pass without any mutation (pytest exit {baseline.returncode}), so they "
              f"prove nothing:\n{baseline.stdout[-3000:]}{baseline.stderr[-2000:]}")
        return 1
    print(f"{len(outcomes) - len(survived)} of {len(outcomes)} mutations caught by the fast subset in "
          f"{time.monotonic() - t0:.0f} s; the catching tests pass unmutated")
    if survived:
        print("SURVIVED (the fast subset passed with the mistake in): " + "; ".join(survived))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
