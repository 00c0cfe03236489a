"""``shmx bench``: runs the benchmark of the source tree (tools/bench/),
passing every argument through.  The benchmark is not part of the
installed package, so outside a checkout this says so in one line."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from .util import CliError


def find_bench() -> Optional[Path]:
    """tools/bench/ (a package run as a directory) of the source tree this
    package runs from (editable install: shmx/cli/ is two levels below the
    root), or of the current directory."""
    here = Path(__file__).resolve().parents[2]
    for cand in (here / "tools" / "bench", Path.cwd() / "tools" / "bench"):
        if (cand / "__main__.py").is_file():
            return cand
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark with the arguments after ``bench`` (a leading ``--`` dropped)."""
    bench = find_bench()
    if bench is None:
        raise CliError("tools/bench/ not found: the benchmark ships with the source repository, "
                       "not the installed package (run it from a checkout)")
    passthrough = list(args.passthrough)
    if passthrough[:1] == ["--"]:
        passthrough = passthrough[1:]
    env = dict(os.environ)
    if getattr(args, "dir", None):
        env["SHMX_DIR"] = args.dir
    try:
        return subprocess.call([sys.executable, str(bench), *passthrough], env=env)
    except KeyboardInterrupt:
        return 130
