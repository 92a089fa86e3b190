"""`python -m tracker.cli`: the same as the `samtrack` command."""

from .main import entry

entry()
