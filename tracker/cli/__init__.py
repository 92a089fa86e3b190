"""The `samtrack` command line (thin: parse arguments, call library functions). `python -m tracker.cli`."""

from .main import entry, main

__all__ = ["entry", "main"]
