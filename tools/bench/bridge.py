"""The bridge scenario (``--scenarios bridge``): region -> Zenoh -> region,
beside raw Zenoh and pyzmq, all over tcp/127.0.0.1 (multicast scouting off),
each with its producer and consumer in separate processes
(``tools/bench_peers/bridge_worker.py``):

* ``bridge``: a producer publishes into a local region; ``shmx bridge out``
  and ``shmx bridge in`` (two more processes, two Zenoh sessions) carry it
  into a mirror region; the consumer reads the mirror with ``Client``
  (looking again for 50 us after each frame before it sleeps, as the bridge
  does);
* ``zenoh``: a Zenoh publisher ``put``s the bytes, a subscriber receives
  them (``payload.to_bytes()``): what the bridge is built on;
* ``zmq``: pyzmq PUB/SUB over tcp loopback.

For a 40-byte and a 1920x1080x3 frame: throughput (the bridge in
``reliable`` delivery with a producer never more than half a ring ahead,
Zenoh reliable with blocking congestion control, zmq with its high-water
mark) and one-way latency p50/p99 of paced frames (the bridge in ``latest``
delivery, Zenoh best effort and express).  Ratios are to raw Zenoh; the
targets (bridge throughput >= 0.9x Zenoh, p50 <= 1.2x) go through
``targets.judge`` with the load measured before the scenario.  Runs once
per bench run (not per round)."""
from __future__ import annotations

import json
import os
import platform
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import FRAME_1080P, ROOT, WORKERS
from .targets import judge

SMALL = 40
WORKER = WORKERS / "bridge_worker.py"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """One process of a bridge run, its JSON lines on stdout."""

    def __init__(self, argv: List[str], stdin: bool = False) -> None:
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE if stdin else None,
                                  stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def line(self, timeout: float) -> Dict[str, Any]:
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise RuntimeError(f"no answer within {timeout} s")
        assert self.p.stdout is not None and self.p.stderr is not None
        text = self.p.stdout.readline()
        if not text:
            raise RuntimeError(f"worker exited: {self.p.stderr.read()[-1500:]}")
        return json.loads(text)

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                if self.p.stdin:
                    self.p.stdin.write("\n")
                    self.p.stdin.flush()
                self.p.wait(timeout=5)
            except Exception:
                pass
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 3)


def one_run(peer: str, size: int, frames: int, rate: float, timeout: float) -> Dict[str, Any]:
    """One producer/consumer run of ``peer``; its consumer's figures."""
    me = [sys.executable, str(WORKER)]
    port = free_port()
    name = f"shmxbench-bridge-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    common = ["--peer", peer, "--size", str(size), "--frames", str(frames), "--rate", str(rate),
              "--name", name, "--port", str(port), "--endpoint", f"tcp/127.0.0.1:{port}", "--timeout", str(timeout)]
    procs: List[Proc] = []
    try:
        prod = Proc(me + ["--role", "producer"] + common, stdin=True)
        procs.append(prod)
        prod.line(60)
        if peer == "bridge":
            delivery = "latest" if rate else "reliable"
            bport = free_port()
            procs.append(Proc([sys.executable, "-m", "shmx", "bridge", "in", "bench/bridge", "--as",
                               name + "-mirror", "--listen", f"tcp/127.0.0.1:{bport}", "--no-multicast",
                               "--delivery", delivery, "-q",
                               # room for a consumer the scheduler leaves waiting
                               "--slots", "8" if size > 65536 else "1024"]))
            procs.append(Proc([sys.executable, "-m", "shmx", "bridge", "out", name, "--key", "bench/bridge",
                               "--connect", f"tcp/127.0.0.1:{bport}", "--no-multicast",
                               "--delivery", delivery, "-q"]))
            cons_args = [a if a != name else name + "-mirror" for a in common]
        else:
            cons_args = common
        cons = Proc(me + ["--role", "consumer"] + cons_args)
        procs.append(cons)
        msg = cons.line(60)
        if "warm" not in msg:
            raise RuntimeError(f"consumer: {msg}")
        roles = ["producer"] + (["bridge_in", "bridge_out"] if peer == "bridge" else []) + ["consumer"]
        cpu0 = [cpu_seconds(p.p.pid) for p in procs]
        assert prod.p.stdin is not None
        prod.p.stdin.write("go\n")
        prod.p.stdin.flush()
        result = cons.line(timeout + 30)
        if "error" in result:
            raise RuntimeError(result["error"])
        # CPU seconds each process spent on the measured frames (from "go" to
        # the consumer's answer, its 3 s idle tail included in a lossy run)
        result["cpu_s"] = {role: round(cpu_seconds(p.p.pid) - c0, 3) for role, p, c0 in zip(roles, procs, cpu0)}
        return result
    except Exception as exc:
        return {"failed": str(exc)}
    finally:
        for p in reversed(procs):
            p.stop()


def plan(quick: bool, only: Optional[str]) -> List[tuple]:
    """(label, size, frames, rate Hz (0: as fast as flow control allows))."""
    q = quick
    rows = [("40 B throughput", SMALL, 500 if q else 20000, 0.0),
            ("1080p throughput", FRAME_1080P, 10 if q else 200, 0.0),
            ("40 B latency", SMALL, 50 if q else 1000, 500.0),
            ("1080p latency", FRAME_1080P, 10 if q else 100, 20.0)]
    if only:
        words = [w.strip() for w in only.split(",") if w.strip()]
        rows = [row for row in rows if any(w in row[0] for w in words)]
    return rows


def run_bridge(args, load: Optional[float]) -> Dict[str, Any]:
    """Every part of the bridge scenario; the scenario's JSON document."""
    peers = [p for p in args.bridge_peers.split(",") if p]
    rows = plan(args.quick, args.bridge_only)
    load_before = os.getloadavg()
    runs: List[Dict[str, Any]] = []
    for label, size, frames, rate in rows:
        for peer in peers:
            sys.stderr.write(f"  bridge: {label}: {peer} ...\n")
            sys.stderr.flush()
            r = one_run(peer, size, frames, rate, 30.0 + (frames / rate if rate else 0))
            r.update({"scenario": label, "peer": peer, "size": size, "frames": frames, "rate": rate})
            runs.append(r)

    def get(label: str, peer: str, key: str) -> Optional[float]:
        return next((r.get(key) for r in runs if r["scenario"] == label and r["peer"] == peer), None)

    figures: Dict[str, Dict[str, Any]] = {}
    for label, _size, _n, rate in rows:
        keys = [("p50_us", "p50 us"), ("p99_us", "p99 us")] if rate else [("rate_hz", "frames/s"), ("gbps", "GB/s")]
        for key, unit in keys:
            figures[f"{label} {unit}"] = {p: get(label, p, key) for p in peers}
    targets: Dict[str, Optional[Dict[str, Any]]] = {}
    labels = [r[0] for r in rows]

    def verdict(ratio: float, op: str, limit: float) -> Dict[str, Any]:
        if args.quick:  # a smoke run measures too little to judge
            return {"ratio": round(ratio, 3), "verdict": "not judged: smoke run", "met": None, "judged": False}
        return dict(ratio=round(ratio, 3), **judge(ratio, op, limit, load))
    for label in ("40 B throughput", "1080p throughput"):
        b, z = get(label, "bridge", "rate_hz"), get(label, "zenoh", "rate_hz")
        if label in labels:
            targets[f"{label}: bridge >= 0.9x zenoh"] = None if not (b and z) else verdict(b / z, ">=", 0.9)
    for label in ("40 B latency", "1080p latency"):
        b, z = get(label, "bridge", "p50_us"), get(label, "zenoh", "p50_us")
        if label in labels:
            targets[f"{label}: bridge p50 <= 1.2x zenoh"] = None if not (b and z) else verdict(b / z, "<=", 1.2)
    load_after = os.getloadavg()
    return {"schema": "shmx-bench-bridge/2", "quick": args.quick, "peers": peers, "figures": figures,
            "targets": targets, "runs": runs, "rows": [r[0] for r in rows],
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                        "loadavg_before": load_before, "loadavg_after": load_after}}


def bridge_table(doc: Dict[str, Any]) -> str:
    """The bridge table: each figure per peer, ratios to raw Zenoh."""
    peers = doc["peers"]
    rows = []
    for fig_name, vals in doc["figures"].items():
        base = vals.get("zenoh")
        cells = []
        for p in peers:
            v = vals.get(p)
            if v is None:
                cells.append("failed")
                continue
            txt = f"{v:,.0f}" if "frames/s" in fig_name else (f"{v:.3f}" if "GB/s" in fig_name else f"{v:.1f}")
            if base and p != "zenoh":
                txt += f" ({v / base:.2f}x)"
            cells.append(txt)
        rows.append([fig_name] + cells)
    header = ["figure"] + peers
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(peers) + 1)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    for k, v in doc["targets"].items():
        if v is None:
            lines.append(f"  target {k}: n/a")
        else:
            verdict = v["verdict"].upper() if v["verdict"] == "missed" else v["verdict"]
            lines.append(f"  target {k}: {v['ratio']}x, {verdict}")
    m = doc["machine"]
    lines.append(f"  load average {m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after; "
                 f"{m['cores']} cores")
    return "\n".join(lines)
