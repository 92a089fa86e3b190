"""`python -m tracker.cli`: the same as the `samtrack` command."""

import sys

from .main import main

sys.exit(main())
