"""Entry point: ``python tools/bench ARGS`` from a checkout (no install), or
``python -m bench ARGS`` with ``tools/`` on the path."""
from __future__ import annotations

import os
import sys

if not __package__:
    # Run as a directory: sys.path[0] is tools/bench itself, where the
    # modules would shadow nothing but would import as top-level names.
    # Make tools/ the entry instead, so that `bench` is a package.
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        sys.path.pop(0)
    sys.path.insert(0, os.path.dirname(here))

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
