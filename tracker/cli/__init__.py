"""The `samtrack` command line (thin: parse arguments, call library functions). `python -m tracker.cli`."""

from .main import main

__all__ = ["main"]
