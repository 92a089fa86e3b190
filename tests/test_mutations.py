"""The mutation check (bench/mutations.py): deliberate mistakes the fast subset must catch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.mutations import FORM_TESTS, MUTATIONS

ROOT = Path(__file__).resolve().parents[1]


def test_every_mutation_applies_to_this_tree():
    """Each mutation's text is found exactly once (a refactor that moves it fails here, at once), changes
    something, and names test files that exist and are not form checks."""
    for m in MUTATIONS:
        assert m.mutated(ROOT) != (ROOT / m.path).read_text(), m.name
        assert m.tests and all((ROOT / t).is_file() and t not in FORM_TESTS for t in m.tests), m.name
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)


@pytest.mark.slow  # the fast subset once per mutation, stopped at its first failure: several minutes
def test_the_fast_subset_fails_for_every_mutation():
    r = subprocess.run([sys.executable, "-m", "bench.mutations"], cwd=ROOT, capture_output=True, text=True,
                       timeout=3600)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-3000:]
    assert f"{len(MUTATIONS)} of {len(MUTATIONS)} mutations caught" in r.stdout, r.stdout
