"""Worker of the bridge scenario (``python tools/bench --scenarios bridge``):
one producer or one consumer of region -> Zenoh -> region, raw Zenoh, or
pyzmq over tcp loopback.  Started by tools/bench/bridge.py with
``--role producer|consumer`` and the run's settings; speaks JSON lines on
stdout (``{"ready": true}``, ``{"warm": true}``, the consumer's result) and
starts its measured frames on a line on stdin.

The first 16 bytes of every frame carry its sequence number (0: warm-up)
and ``time.perf_counter_ns()`` at publish (CLOCK_MONOTONIC: one clock for
every process).  Runs under the driver's interpreter, with this checkout's
shmx first on the path."""
from __future__ import annotations

import argparse
import json
import select
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent.parent
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=("producer", "consumer"), required=True)
    for opt, kind in (("--peer", str), ("--size", int), ("--frames", int), ("--rate", float),
                      ("--name", str), ("--port", int), ("--endpoint", str), ("--timeout", float)):
        ap.add_argument(opt, type=kind, default=None)
    args = ap.parse_args()
    if args.role == "producer":
        producer(args)
    else:
        consumer(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
