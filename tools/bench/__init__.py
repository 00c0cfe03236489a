"""shmx benchmarks, side by side with the peers a user would pick instead.

    python tools/bench --setup-peers --docs      # the full run (see docs/benchmarks.md)
    python tools/bench --quick --out /tmp/b.json # CI smoke run: shmx only, seconds
    python tools/bench --rerender tools/out/bench.json --docs   # redraw, measure nothing

This package owns the benchmark harness, one module per concern:

* ``peers``   the contenders: which worker script, interpreter and venv each
              one runs under, installing them (``--setup-peers``), probing;
* ``workers`` worker processes: starting, the JSON-line protocol, one
              producer/consumer run (``run_pair``) or one in-process run
              (``run_single``), and removing every name a run leaves;
* ``floors``  the machine's own limits measured beside the peers (memcpy,
              cache-line round trip, C futex and busy-poll hand-offs, the C
              copy hand-off of big frames, the C core's call costs), the
              load average and machine description;
* ``run``     the plan of a run (scenario by scenario, rounds, peers taking
              turns) and what each step records;
* ``stats``   the figures' registry, per-round values and their summaries;
* ``targets`` the targets as ratios to floors and peers of the same run, and
              ``judge()``, which refuses a verdict on a loaded machine;
* ``report``  the text table, the peers' modes, the JSON document;
* ``charts``  the PNG charts (matplotlib, optional);
* ``docs``    docs/benchmarks.md and the README's performance table;
* ``bridge``  region -> Zenoh -> region beside raw Zenoh and pyzmq
              (``--scenarios bridge``);
* ``cli``     the command line (``__main__`` runs it).

The workers themselves are scripts in ``tools/bench_peers/`` (they run under
each peer's own interpreter, so they import nothing from here) and the C
programs are in ``tools/bench_c/``.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TOOLS = ROOT / "tools"
WORKERS = TOOLS / "bench_peers"
C_DIR = TOOLS / "bench_c"
PEERS_DIR = ROOT / ".peers"
CSRC = ROOT / "csrc"
PID = os.getpid()
PREFIX = f"shmxbench-{PID}-"          # every name this run creates starts with it
FRAME_1080P = 1920 * 1080 * 3
# The big scenario's producers copy RING_SOURCES frames in turn into a ring
# of RING_SLOTS (shmx's slots, the stdlib ring's); the C copy hand-off
# (tools/bench_c/copyhand.c), the touch row's floor, does the same.
RING_SOURCES = 8
RING_SLOTS = 4
SMALL_BYTES = 40
