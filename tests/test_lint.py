"""Static checks over the project's code (ruff), so style errors fail the test command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is installed by setup.sh (dev extra)"
    r = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_mypy_engines_against_tensorrt_stubs():
    """The TensorRT adapter is type-checked against tensorrt-stubs (TensorRT itself cannot be installed here)."""
    r = subprocess.run([sys.executable, "-m", "mypy", "engines/", "--ignore-missing-imports",
                        "--follow-imports=silent", "--python-version", "3.11"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    import importlib.util

    assert importlib.util.find_spec("tensorrt_stubs") is not None or importlib.util.find_spec("tensorrt")
