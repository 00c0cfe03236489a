"""``python -m shmx``: the ``shmx`` command."""
import sys

from .cli import main

sys.exit(main())
