"""The command line: options, the run from setup to output, ``--rerender``.

    python tools/bench --setup-peers --docs      # full run, rewrites the docs
    python tools/bench --quick --out /tmp/b.json # smoke run: shmx only, seconds
"""
from __future__ import annotations

import argparse
import atexit
import datetime
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import PID, ROOT
from .charts import make_charts
from .docs import readme_table, write_docs, write_readme
from .floors import machine_info, machine_text
from .peers import Peer, all_peers, probe_peer, setup_peer
from .report import json_doc, render_load, render_peers, render_table
from .run import DEFAULT_SCENARIOS, SCENARIOS, Progress, run_all, total_steps
from .stats import FIGURES, Results, scale_figures
from .targets import targets_report
from .workers import cleanup_names, kill_all_workers, remember_foreign_ecal_files

DEFAULT_OUT = ROOT / "tools" / "out" / "bench.json"


def parser() -> argparse.ArgumentParser:
    """Every option of the bench."""
    ap = argparse.ArgumentParser(prog="python tools/bench",
                                 description="shmx benchmarks, side by side with the peers a user would pick instead.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run: shmx only, small counts, no verdicts")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick: 1)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"JSON output path (default {DEFAULT_OUT.relative_to(ROOT)}; --quick: none unless given)")
    ap.add_argument("--setup-peers", action="store_true", help="create/refresh the peers' venvs in .peers/ from PyPI")
    ap.add_argument("--peers", default=None, help="comma-separated subset of peers (shmx always runs)")
    ap.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                    help=f"comma-separated subset of: {','.join(SCENARIOS)} (default {DEFAULT_SCENARIOS})")
    ap.add_argument("--count", type=int, default=None, help="latency messages per peer and round (default 10000)")
    ap.add_argument("--latency-parts", type=int, default=None,
                    help="run each peer's latency messages in this many parts, the peers taking turns "
                         "(default 4; --quick: 1)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per rate/big/scale run (default 2)")
    ap.add_argument("--consumers", default=None, help="consumer counts for scaling (default 1,4,16)")
    ap.add_argument("--settle", type=float, default=None,
                    help="before each scenario wait up to this many seconds for the load average to fall "
                         "under 1.0 (default 60; --quick: 0)")
    ap.add_argument("--docs", action="store_true",
                    help="also write docs/benchmarks.md, docs/img/*.png and the README's performance table")
    ap.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    ap.add_argument("--rerender", "--from-json", dest="from_json", type=Path, default=None, metavar="JSON",
                    help="measure nothing: redraw the table, charts (and --docs) from an earlier --out file")
    ap.add_argument("--bridge-peers", default="bridge,zenoh,zmq",
                    help="bridge scenario: comma-separated subset of bridge,zenoh,zmq")
    ap.add_argument("--bridge-only", default=None, metavar="WORDS",
                    help="bridge scenario: run the parts whose name contains one of these comma-separated words "
                         "(e.g. '40 B', 'latency')")
    return ap


def _chart_note(args, charts: List[str]) -> Optional[str]:
    if args.out is None:
        return None
    if charts:
        return f"; charts: {', '.join(charts)}"
    if args.no_charts:
        return ""
    return ("; no charts (no scenario with a chart ran)" if importlib.util.find_spec("matplotlib")
            else "; no charts (matplotlib is not importable)")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the bench; 0 on success, 130 when interrupted."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.from_json:
        return rerender(args)
    if args.out is None and not args.quick:
        args.out = DEFAULT_OUT
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.count = args.count or (200 if args.quick else 10000)
    if args.latency_parts is None:
        args.latency_parts = 1 if args.quick else 4
    if args.latency_parts < 1:
        ap.error("--latency-parts must be at least 1")
    args.duration = args.duration or (0.2 if args.quick else 2.0)
    args.consumers = [int(x) for x in (args.consumers or ("1,2" if args.quick else "1,4,16")).split(",")]
    args.settle = args.settle if args.settle is not None else (0.0 if args.quick else 60.0)
    args.scenarios = {s for s in args.scenarios.split(",") if s}
    unknown = args.scenarios - set(SCENARIOS)
    if unknown:
        ap.error(f"--scenarios: unknown {', '.join(sorted(unknown))}")
    for p in args.bridge_peers.split(","):
        if p and p not in ("bridge", "zenoh", "zmq"):
            ap.error(f"--bridge-peers: unknown peer {p!r}")
    command = "python tools/bench " + " ".join(argv if argv is not None else sys.argv[1:])

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(cleanup_names)
    atexit.register(kill_all_workers)
    remember_foreign_ecal_files()

    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    t_start = time.monotonic()
    machine = machine_info()
    peers = all_peers()
    if args.quick:
        peers = [p for p in peers if p.name == "shmx"]
    elif args.peers:
        wanted = set(args.peers.split(",")) | {"shmx"}
        peers = [p for p in peers if p.name in wanted]
    tmp = tempfile.mkdtemp(prefix=f"shmxbench-work-{PID}-")  # not PREFIX: cleanup_names() would take it
    build = os.path.join(tmp, "build")
    os.makedirs(build)
    progress = Progress(1)
    res = Results(args.rounds)
    interrupted = False

    def say(text: str) -> None:
        progress.note(text)

    try:
        for p in peers:
            if args.setup_peers and p.venv:
                progress.note(f"peer {p.name}: setting up")
            setup_peer(p, args.setup_peers, progress.note)
            probe_peer(p, tmp)
            if p.status != "ran":
                progress.note(f"peer {p.name}: skipped ({p.reason})")
        if not peers[0].ok:
            print(f"shmx itself cannot run: {peers[0].reason}", file=sys.stderr)
            return 1
        progress = Progress(total_steps(peers, args))
        run_all(peers, args, res, tmp, build, progress, say)
    except KeyboardInterrupt:
        interrupted = True
        progress.note("interrupted: writing what was measured")
    finally:
        progress.close()
        kill_all_workers()
        cleanup_names()
        shutil.rmtree(tmp, ignore_errors=True)

    # A smoke run (one short round, shmx only) measures too little to judge
    # a target: it says so instead of printing MISSED for a loaded machine.
    targets = [] if args.quick else targets_report(res)
    table = render_table(res, peers, targets)
    peers_text = render_peers(peers)
    doc = json_doc(args, res, peers, machine, targets, command, started, time.monotonic() - t_start, interrupted)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not args.no_charts:
            doc["charts"] = make_charts(res, peers, args.out.parent, args.out.stem)
    try:
        machine["loadavg_at_end"] = list(os.getloadavg())
    except OSError:
        pass
    if args.out is not None:
        args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    if args.quick:
        print("SMOKE RUN (--quick): one short round of shmx alone, to check that every part runs; "
              "no target is judged and the numbers are not benchmark results.")
    print(f"shmx benchmarks - {started} - {machine_text(machine)}")
    print(peers_text)
    print(table)
    note = _chart_note(args, doc["charts"])
    print("\nNo JSON written (--out PATH writes it)." if note is None else f"\nJSON: {args.out}{note}")
    if args.docs and not args.quick:
        _write_docs(table, peers_text, machine, doc["charts"], command, started, targets, args.latency_parts, res)
    return 130 if interrupted else 0


def _write_docs(table: str, peers_text: str, machine: Dict[str, Any], charts: List[str], command: str,
                started: str, targets: List[Dict[str, Any]], parts: int, res: Results) -> None:
    path = write_docs(table, peers_text, machine, charts, command, started, targets, parts, render_load(res))
    print(f"docs: {path}")
    readme = write_readme(readme_table(res, targets, started))
    print(f"README table: {readme}" if readme else "README table: markers not found, not written")


def results_from_json(doc: Dict[str, Any]) -> Results:
    """A Results rebuilt from a saved run (schema 1 or 2)."""
    res = Results(int(doc["rounds"]))
    for key, fig in doc["figures"].items():
        if key not in FIGURES and key.startswith("scale.") and key.split(".")[1].isdigit():
            scale_figures(int(key.split(".")[1]))
        res.values[key] = fig["values"]
    res.na = doc.get("not_available", {})
    res.runs = doc.get("runs", [])
    res.load = doc.get("scenario_load", {}) or {}
    res.bridge = doc.get("bridge")
    return res


def rerender(args) -> int:
    """Table, charts and docs again from a saved JSON (no measurement)."""
    doc = json.loads(args.from_json.read_text())
    res = results_from_json(doc)
    peers: List[Peer] = []
    for p in all_peers():
        info = doc["peers"].get(p.name)
        if info is None:
            continue
        p.status, p.reason, p.version, p.modes = info["status"], info["reason"], info["version"], info["modes"]
        peers.append(p)
    machine = doc["machine"]
    targets = [] if doc.get("quick") else targets_report(res)
    table = render_table(res, peers, targets)
    peers_text = render_peers(peers)
    out = args.out if args.out is not None else args.from_json
    charts = [] if args.no_charts else make_charts(res, peers, out.parent, out.stem)
    print(f"shmx benchmarks - {doc['started']} - {machine_text(machine)}")
    print(peers_text)
    print(table)
    if args.docs:
        _write_docs(table, peers_text, machine, charts, doc["command"], doc["started"], targets,
                    int(doc["params"].get("latency_parts", 1)), res)
    return 0
