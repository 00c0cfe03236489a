#!/usr/bin/env python3
"""Kept for ``shmx bench`` (the CLI looks for tools/bench.py): runs the
benchmark package ``tools/bench/`` with the same arguments.  Use
``python tools/bench ARGS`` directly."""
import os
import runpy
import sys

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[0] = here  # `import bench` finds the package tools/bench/ (a package wins over this file)
    runpy.run_module("bench", run_name="__main__", alter_sys=True)
