#!/usr/bin/env python3
"""The bridge benchmark: region -> Zenoh -> region, beside raw Zenoh and pyzmq.

    python tools/bench_bridge.py                 # full run (about 2 minutes)
    python tools/bench_bridge.py --quick --out /tmp/bb.json   # smoke run, seconds

Three ways to carry the same bytes over tcp/127.0.0.1 (multicast scouting
off), each with its producer and consumer in separate processes:

* ``bridge``: a producer publishes into a local region; ``shmx bridge out``
  and ``shmx bridge in`` (two more processes, two Zenoh sessions) carry it
  into a mirror region; the consumer reads the mirror with ``Client``
  (looking again for 50 us after each frame before it sleeps in
  ``wait_next``/``wait_frame``, as the bridge does);
* ``zenoh``: a Zenoh publisher ``put``s the bytes, a subscriber receives them
  (``payload.to_bytes()``): what the bridge is built on;
* ``zmq``: pyzmq PUB/SUB over tcp loopback.

For a 40-byte and a 1920x1080x3 frame: throughput (frames/s and GB/s the
consumer received; the bridge in ``reliable`` delivery with a producer that
never runs more than half a ring ahead of the bridge, Zenoh reliable with
blocking congestion control, zmq with its high-water mark) and one-way
latency p50/p99 of paced frames (the bridge in ``latest`` delivery, Zenoh
best effort and express).  The first 16 bytes of every frame carry its
sequence number and ``time.perf_counter_ns()`` at publish (CLOCK_MONOTONIC:
one clock for every process).  Output: a table with each peer's ratio to
raw Zenoh, and JSON (``--out``).  Targets (issue 14): bridge throughput at
least 0.9x raw Zenoh, bridge p50 at most 1.2x raw Zenoh's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
FRAME_1080P = 1920 * 1080 * 3
SMALL = 40
HEAD = struct.Struct("<QQ")  # seq (0: warm-up), perf_counter_ns at publish


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zcfg(listen: Optional[str] = None, connect: Optional[str] = None) -> Any:
    sys.path.insert(0, str(ROOT))
    from shmx.bridge import zenoh_config
    return zenoh_config(listen=[listen] if listen else (), connect=[connect] if connect else (),
                        mode="peer", multicast_scouting=False)


def emit(obj: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def go_requested() -> bool:
    """The orchestrator writes a line on stdin to start the measured frames."""
    return bool(select.select([sys.stdin], [], [], 0)[0]) and bool(sys.stdin.readline())


# ---------------------------------------------------------------- producers
def producer(args: argparse.Namespace) -> None:
    size, n, rate = args.size, args.frames, args.rate
    buf = bytearray(size)
    for i in range(16, size):
        buf[i] = (i * 7) & 0xFF
    # SIGTERM from the orchestrator ends the run through `finally` (the
    # region is destroyed, not left stale)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.peer == "bridge":
        sys.path.insert(0, str(ROOT))
        import shmx
        slots = 4 if size > 65536 else 1024
        server = shmx.serve(args.name, [shmx.create_stream_spec(1, "data", shmx.DT_U8, 1, 1)],
                            slots=slots, frame_bytes_cap=size)
        publish = server.publish_stream

        def send(b: Any) -> None:
            publish(1, b)

        lag_limit = slots // 2

        def flow(seq: int) -> None:
            # never more than half a ring ahead of the bridge's reader
            if rate or (seq % max(lag_limit // 2, 1) and seq > 1):
                return
            while True:
                seen = [r["last_frame_seen"] for r in server.snapshot_readers() if r["in_use"]]
                if not seen or server.get_header_info()["frame_seq"] - min(seen) < lag_limit:
                    return
                # a look costs ~20 us of CPU that the bridge needs on a small
                # machine (raw Zenoh's producer blocks without CPU): look
                # every 0.5 ms, while the bridge still has a quarter of the
                # ring (at least a frame) to read
                time.sleep(0.0005)
    elif args.peer == "zenoh":
        import zenoh
        session = zenoh.open(zcfg(listen=args.endpoint))
        reliable = not rate
        pub = session.declare_publisher(
            "bench/raw", reliability=zenoh.Reliability.RELIABLE if reliable else zenoh.Reliability.BEST_EFFORT,
            congestion_control=zenoh.CongestionControl.BLOCK if reliable else zenoh.CongestionControl.DROP,
            express=not reliable)
        send = pub.put

        def flow(seq: int) -> None:
            pass
    else:
        import zmq
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, 8 if size > 65536 else 10000)
        sock.bind(f"tcp://127.0.0.1:{args.port}")

        def send(b: Any) -> None:
            sock.send(b, copy=True)

        def flow(seq: int) -> None:
            pass
    try:
        produce(send, flow, buf, n, rate)
    finally:
        if args.peer == "bridge":
            server.destroy()


def produce(send: Any, flow: Any, buf: bytearray, n: int, rate: float) -> None:
    emit({"ready": True})
    while not go_requested():  # warm-up frames until the consumer saw one
        HEAD.pack_into(buf, 0, 0, time.perf_counter_ns())
        send(buf)
        time.sleep(0.05)
    period = 1.0 / rate if rate else 0.0
    start = time.perf_counter()
    for seq in range(1, n + 1):
        if period:
            due = start + seq * period
            while True:
                left = due - time.perf_counter()
                if left <= 0:
                    break
                time.sleep(left if left > 0.0005 else 0)
        flow(seq)
        HEAD.pack_into(buf, 0, seq, time.perf_counter_ns())
        send(buf)
    emit({"sent": n, "seconds": time.perf_counter() - start})
    sys.stdin.readline()  # keep the region/socket until the consumer is done


# ---------------------------------------------------------------- consumers
def consumer(args: argparse.Namespace) -> None:
    n, size = args.frames, args.size
    records: List[tuple] = []  # (seq, publish ns, receive ns, bytes) of measured frames
    state: Dict[str, Any] = {"warm": False, "done": False, "error": None}

    def take(data: Any) -> None:
        now_ns = time.perf_counter_ns()
        seq, ts = HEAD.unpack_from(data, 0)
        if seq == 0:
            if not state["warm"]:
                state["warm"] = True
                emit({"warm": True})
            return
        if len(data) != size:
            state["error"] = f"frame of {len(data)} bytes, expected {size}"
        records.append((seq, ts, now_ns))
        if seq >= n:
            state["done"] = True

    wait: Any
    if args.peer == "bridge":
        sys.path.insert(0, str(ROOT))
        import shmx
        client = shmx.connect(args.name, timeout=60)
        reliable = not args.rate
        poll = client.read_next if reliable else client.get_latest_frame
        block = client.wait_next if reliable else client.wait_frame

        def wait(timeout: float) -> bool:
            # like the bridge itself: look again for 50 us, then sleep
            last = client.frame_id
            end = time.perf_counter() + 50e-6
            f = None
            while time.perf_counter() < end:
                f = poll()
                if f is not None and (reliable or f["__metadata__"]["frame_id"] > last):
                    break
                f = None
            if f is None:
                f = block(timeout)
            if f is not None:
                take(f["data"]["data"])
            return f is not None
    elif args.peer == "zenoh":
        import threading
        import zenoh
        session = zenoh.open(zcfg(connect=args.endpoint))
        arrived = threading.Event()

        def on_sample(sample: Any) -> None:  # measured in Zenoh's callback itself
            take(sample.payload.to_bytes())
            arrived.set()
        state["sub"] = session.declare_subscriber("bench/raw", on_sample)  # kept alive

        def wait(timeout: float) -> bool:
            ok = arrived.wait(timeout)
            arrived.clear()
            return ok
    else:
        import zmq
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 8 if size > 65536 else 10000)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(f"tcp://127.0.0.1:{args.port}")
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)

        def wait(timeout: float) -> bool:
            if not poller.poll(int(timeout * 1000)):
                return False
            take(sock.recv(copy=False).buffer)
            return True
    end = time.monotonic() + args.timeout
    idle_since: Optional[float] = None
    while time.monotonic() < end and not state["done"] and not state["error"]:
        if wait(0.2):
            idle_since = None
        elif records:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 3.0:
                break
    if state["error"]:
        emit({"error": state["error"]})
        return
    recs = sorted(records)
    lat = sorted(r[2] - r[1] for r in recs)
    missed = sum(max(b[0] - a[0] - 1, 0) for a, b in zip(recs, recs[1:]))

    def pct(p: float) -> Optional[float]:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] / 1000, 1) if lat else None

    got = len(recs)
    t = sorted(r[2] for r in recs)
    rate = (got - 1) / ((t[-1] - t[0]) / 1e9) if got > 1 and t[-1] > t[0] else None
    emit({"received": got, "missed": missed, "rate_hz": rate,
          "gbps": rate * size / 1e9 if rate else None,
          "p50_us": pct(0.50), "p99_us": pct(0.99)})


# ------------------------------------------------------------- orchestrator
class Proc:
    def __init__(self, argv: List[str], stdin: bool = False) -> None:
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE if stdin else None,
                                  stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def line(self, timeout: float) -> Dict[str, Any]:
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise RuntimeError(f"no answer within {timeout} s")
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
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 3)


def one_run(peer: str, size: int, frames: int, rate: float, timeout: float) -> Dict[str, Any]:
    me = [sys.executable, str(Path(__file__).resolve())]
    port = free_port()
    endpoint = f"tcp/127.0.0.1:{port}"
    name = f"shmxbench-bridge-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    common = ["--peer", peer, "--size", str(size), "--frames", str(frames), "--rate", str(rate),
              "--name", name, "--port", str(port), "--endpoint", endpoint, "--timeout", str(timeout)]
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
        prod.p.stdin.write("go\n")
        prod.p.stdin.flush()
        result = cons.line(timeout + 30)
        if "error" in result:
            raise RuntimeError(result["error"])
        # CPU seconds (user + system, all threads) each process spent on the
        # measured frames (from "go" to the consumer's answer, the consumer's
        # 3 s idle tail included in a lossy run), to set a rate against what
        # the machine's cores allow
        result["cpu_s"] = {role: round(cpu_seconds(p.p.pid) - c0, 3)
                           for role, p, c0 in zip(roles, procs, cpu0)}
        return result
    except Exception as exc:
        return {"failed": str(exc)}
    finally:
        for p in reversed(procs):
            p.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few frames: a smoke run")
    ap.add_argument("--out", default=None, help="write the JSON here")
    ap.add_argument("--peers", default="bridge,zenoh,zmq", help="comma-separated (default all three)")
    ap.add_argument("--only", default=None, metavar="WORDS",
                    help="run the scenarios whose name contains one of these comma-separated words")
    ap.add_argument("--role", choices=("producer", "consumer"), default=None, help=argparse.SUPPRESS)
    for opt, kind in (("--peer", str), ("--size", int), ("--frames", int), ("--rate", float),
                      ("--name", str), ("--port", int), ("--endpoint", str), ("--timeout", float)):
        ap.add_argument(opt, type=kind, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "producer":
        producer(args)
        return 0
    if args.role == "consumer":
        consumer(args)
        return 0

    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in ("bridge", "zenoh", "zmq"):
            ap.error(f"--peers: unknown peer {p!r}")
    q = args.quick
    plan = [  # (label, size, frames, rate Hz (0: as fast as flow control allows))
        ("40 B throughput", SMALL, 500 if q else 20000, 0.0),
        ("1080p throughput", FRAME_1080P, 10 if q else 200, 0.0),
        ("40 B latency", SMALL, 50 if q else 1000, 500.0),
        ("1080p latency", FRAME_1080P, 10 if q else 100, 20.0),
    ]
    if args.only:
        words = [w.strip() for w in args.only.split(",") if w.strip()]
        plan = [row for row in plan if any(w in row[0] for w in words)]
    load_before = os.getloadavg()
    runs: List[Dict[str, Any]] = []
    for label, size, frames, rate in plan:
        for peer in peers:
            sys.stderr.write(f"{label}: {peer} ...\n")
            sys.stderr.flush()
            timeout = 30.0 + (frames / rate if rate else 0)
            r = one_run(peer, size, frames, rate, timeout)
            r.update({"scenario": label, "peer": peer, "size": size, "frames": frames, "rate": rate})
            runs.append(r)

    def get(label: str, peer: str, key: str) -> Optional[float]:
        for r in runs:
            if r["scenario"] == label and r["peer"] == peer:
                return r.get(key)
        return None

    rows = []
    figures: Dict[str, Dict[str, Any]] = {}
    for label, size, _, rate in plan:
        keys = [("p50_us", "p50 us"), ("p99_us", "p99 us")] if rate else [("rate_hz", "frames/s"), ("gbps", "GB/s")]
        for key, unit in keys:
            fig = {p: get(label, p, key) for p in peers}
            figures[f"{label} {unit}"] = fig
            base = fig.get("zenoh")
            cells = []
            for p in peers:
                v = fig[p]
                if v is None:
                    cells.append("failed")
                    continue
                txt = f"{v:,.0f}" if key == "rate_hz" else (f"{v:.3f}" if key == "gbps" else f"{v:.1f}")
                if base and p != "zenoh":
                    txt += f" ({v / base:.2f}x)"
                cells.append(txt)
            rows.append([f"{label}, {unit}"] + cells)
    targets = {}
    for label in ("40 B throughput", "1080p throughput"):
        b, z = get(label, "bridge", "rate_hz"), get(label, "zenoh", "rate_hz")
        targets[f"{label}: bridge >= 0.9x zenoh"] = None if not (b and z) else {"ratio": round(b / z, 3), "met": b / z >= 0.9}
    for label in ("40 B latency", "1080p latency"):
        b, z = get(label, "bridge", "p50_us"), get(label, "zenoh", "p50_us")
        targets[f"{label}: bridge p50 <= 1.2x zenoh"] = None if not (b and z) else {"ratio": round(b / z, 3), "met": b / z <= 1.2}
    load_after = os.getloadavg()
    widths = [max(len(str(r[i])) for r in rows + [["figure"] + peers]) for i in range(len(peers) + 1)]
    header = ["figure"] + peers
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    for k, v in targets.items():
        print(f"target {k}: " + ("n/a" if v is None else f"{v['ratio']}x, {'met' if v['met'] else 'NOT met'}"))
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; {os.cpu_count()} cores")
    doc = {"schema": "shmx-bench-bridge/1", "quick": q, "peers": peers, "figures": figures,
           "targets": targets, "runs": runs,
           "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                       "kernel": platform.release(), "loadavg_before": load_before,
                       "loadavg_after": load_after}}
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
