"""Worker half of the benchmark (tools/bench/): the line protocol and the measurement loops.

Standard library only (numpy is used when present), because it runs under
every peer's own interpreter.  A peer worker (``<peer>_worker.py``) supplies
two small adapters and calls ``main()``:

* a *sender* (producer side): ``send(msg: bytes)`` for a 40-byte message,
  ``send_big(src)`` for a large frame (a numpy uint8 array or bytearray),
  ``lossy`` (True when the transport drops rather than queues), ``info``
  (a dict describing the mode), ``close()``;
* a *receiver* (consumer side): ``poll()`` (the next new message or None,
  without blocking), ``wait(timeout_s)`` (the same, blocking), ``release()``
  (True when the message it returned last is still intact, e.g. its seqlock
  did not move), ``dropped`` (frames the transport says it skipped before
  the last one, or None), optionally ``dropped_total()`` (the sum of
  ``dropped`` so far and the last one's ``dropped``: the loop then asks at
  the first and the last message instead of reading ``dropped`` at each
  one), ``stamp`` (a receipt time taken earlier than the
  loop can, e.g. inside a callback, or 0), ``can_poll``/``can_block``,
  ``info``, ``close()``.

Protocol.  The driver starts ``python <peer>_worker.py '<json config>'``; the
worker prints one JSON object per line on stdout::

    {"ev": "probe", "version": ...}          answer to role "probe"
    {"ev": "ready", "role": ..., "idx": i}   set up; consumers: connected
    {"ev": "result", "role": ..., ...}       figures of the run
    {"ev": "unsupported", "reason": ...}     the peer has no such mode
    {"ev": "error", "reason": ...}

and reads ``go`` (start measuring) and ``stop`` (finish) lines on stdin.
Until ``go`` the producer publishes warm-up messages (id 0) so consumers can
prove they are connected; after the measured messages (ids from 1) it sends
end markers (id 2**64-1) until ``stop``.

Every message starts with ``HDR``: u64 id, f64 time (seconds), u64 send stamp
(``time.perf_counter_ns()``, CLOCK_MONOTONIC, comparable across processes).
"""
from __future__ import annotations

import gc
import json
import os
import select
import struct
import sys
import time
import traceback
from array import array
from typing import Any, Callable, Dict, List, Optional

np: Any = None  # numpy, imported only by the runs that need it (startup time)


def load_numpy() -> Any:
    """Import numpy if it is installed (optional for every peer)."""
    global np
    if np is None:
        try:
            import numpy
            np = numpy
        except ImportError:
            np = False
    return np or None

HDR = struct.Struct("<QdQ")
SMALL = struct.Struct("<QdQ16x")  # the 40-byte message: header + 16 bytes
SMALL_BYTES = SMALL.size
WARMUP_ID = 0
END_ID = 0xFFFFFFFFFFFFFFFF
PAGE = 4096
HIST_LO_NS = 100          # latency histogram: first edge
HIST_PER_DECADE = 20      # log-spaced bins
HIST_DECADES = 8          # 100 ns .. 10 s

now_ns = time.perf_counter_ns
_emit_lock: Any = None


def set_emit_lock(lock: Any) -> None:
    """Forked consumer processes share stdout: serialise their lines."""
    global _emit_lock
    _emit_lock = lock


def emit(**fields: Any) -> None:
    """Write one protocol line (one write call, so lines never interleave)."""
    data = (json.dumps(fields, separators=(",", ":")) + "\n").encode()
    if _emit_lock is not None:
        _emit_lock.acquire()
    try:
        sys.stdout.flush()
        view = memoryview(data)
        while view:
            n = os.write(1, view)
            view = view[n:]
    finally:
        if _emit_lock is not None:
            _emit_lock.release()


class Commands:
    """Non-blocking reader of the driver's command lines on stdin."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.buf = b""
        self.closed = False

    def get(self, timeout_s: float = 0.0) -> Optional[str]:
        if b"\n" not in self.buf and not self.closed:
            r, _, _ = select.select([self.fd], [], [], max(timeout_s, 0.0))
            if r:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    self.closed = True
                self.buf += chunk
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            return line.decode().strip()
        if self.closed:
            return "stop"  # the driver went away
        return None


# ------------------------------------------------------------------ stats

def latency_stats(samples: "array") -> Dict[str, Any]:
    """Percentiles (nearest rank, in microseconds) and a log histogram."""
    n = len(samples)
    if n == 0:
        return {"n": 0}
    s = sorted(samples)

    def pct(p: float) -> float:
        k = min(n - 1, max(0, int(round(p / 100.0 * n + 0.5)) - 1))
        return s[k] / 1000.0

    counts = [0] * (HIST_PER_DECADE * HIST_DECADES + 2)
    import math
    scale = HIST_PER_DECADE / math.log(10.0)
    lo = math.log(HIST_LO_NS)
    last = len(counts) - 1
    for v in s:
        if v < HIST_LO_NS:
            counts[0] += 1
        else:
            b = 1 + int((math.log(v) - lo) * scale)
            counts[b if b < last else last] += 1
    return {"n": n, "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99), "p999_us": pct(99.9),
            "min_us": s[0] / 1000.0, "max_us": s[-1] / 1000.0, "mean_us": sum(s) / n / 1000.0,
            "hist": {"lo_ns": HIST_LO_NS, "per_decade": HIST_PER_DECADE, "counts": counts}}


# --------------------------------------------------------------- sources

def make_sources(count: int, nbytes: int) -> List[Any]:
    """``count`` distinct source frames (together larger than the caches)."""
    out = []
    for k in range(count):
        if np:
            a = np.empty(nbytes, dtype=np.uint8)
            a[:] = (np.arange(nbytes, dtype=np.uint32) * (2 * k + 1) >> 3).astype(np.uint8)
        else:
            a = bytearray(((i * (2 * k + 1)) >> 3) & 0xFF for i in range(min(nbytes, 4096))) * (nbytes // 4096 + 1)
            del a[nbytes:]
        out.append(a)
    return out


# --------------------------------------------------------------- producer

def _warmup(tx: Any, cmds: Commands, big_src: Any, limit_s: float) -> bool:
    """Publish warm-up messages until the driver says go (False: stop)."""
    end = time.monotonic() + limit_s
    period = 0.005 if big_src is not None else 0.001
    while time.monotonic() < end:
        stamp = now_ns()
        if big_src is not None:
            HDR.pack_into(big_src, 0, WARMUP_ID, 0.0, stamp)
            tx.send_big(big_src)
        else:
            tx.send(SMALL.pack(WARMUP_ID, 0.0, stamp))
        cmd = cmds.get(period)
        if cmd == "go":
            return True
        if cmd == "stop":
            return False
    return False


def _finish(tx: Any, cmds: Commands, big_src: Any, limit_s: float) -> None:
    """Send end markers until the driver says stop: repeatedly on a lossy
    transport (a marker may be dropped), once on a queueing one."""
    end = time.monotonic() + limit_s
    sent = False
    while time.monotonic() < end:
        if not sent or tx.lossy:
            try:
                if big_src is not None:
                    HDR.pack_into(big_src, 0, END_ID, 0.0, now_ns())
                    tx.send_big(big_src)
                else:
                    tx.send(SMALL.pack(END_ID, 0.0, now_ns()))
            except (BrokenPipeError, ConnectionError, OSError):
                return
            sent = True
        if cmds.get(0.001 if tx.lossy else 0.05) == "stop":
            return


def _spin_until(target: int) -> None:
    left = target - now_ns()
    if left > 400_000:
        time.sleep((left - 300_000) / 1e9)
    while now_ns() < target:
        pass


def pin_to(cpus: Optional[List[int]]) -> None:
    """Run this process on ``cpus`` only (the driver's scaling runs)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def run_producer(tx: Any, cfg: Dict[str, Any]) -> None:
    pin_to(cfg.get("producer_cpus"))
    cmds = Commands()
    scenario = cfg["scenario"]
    big = scenario == "big"
    sources = make_sources(int(cfg.get("sources", 8)), int(cfg["frame_bytes"])) if big else []
    emit(ev="ready", role="producer", idx=0, pid=os.getpid(), info=getattr(tx, "info", {}))
    if not _warmup(tx, cmds, sources[0] if big else None, float(cfg.get("ready_timeout", 60))):
        emit(ev="error", role="producer", reason="no go from the driver")
        return
    gc.disable()
    res: Dict[str, Any] = {}
    send = tx.send
    pack = SMALL.pack
    if scenario == "latency":
        n = int(cfg["count"])
        period = 1e9 / float(cfg["hz"])
        t0 = now_ns() + 2_000_000
        late = 0
        for i in range(1, n + 1):
            target = t0 + int(i * period)
            _spin_until(target)
            stamp = now_ns()
            if stamp - target > 50_000:
                late += 1
            send(pack(i, stamp * 1e-9, stamp))
        elapsed = now_ns() - t0
        res = {"sent": n, "elapsed_s": elapsed / 1e9, "late_over_50us": late}
    elif scenario in ("rate", "scale"):
        dur = int(float(cfg["duration"]) * 1e9)
        i = 0
        t0 = now_ns()
        end = t0 + dur
        stamp = t0
        while stamp < end:
            i += 1
            send(pack(i, 0.0, stamp))
            stamp = now_ns()
        elapsed = stamp - t0
        res = {"sent": i, "elapsed_s": elapsed / 1e9, "rate_hz": i / (elapsed / 1e9),
               "publish_ns": elapsed / max(i, 1)}
    elif scenario == "big":
        dur = int(float(cfg["duration"]) * 1e9)
        send_big = tx.send_big
        nsrc = len(sources)
        i = 0
        busy = 0
        t0 = now_ns()
        end = t0 + dur
        ta = t0
        while ta < end:
            src = sources[i % nsrc]
            i += 1
            HDR.pack_into(src, 0, i, 0.0, ta)
            send_big(src)
            tb = now_ns()
            busy += tb - ta
            ta = tb
        elapsed = ta - t0
        res = {"sent": i, "elapsed_s": elapsed / 1e9, "fps": i / (elapsed / 1e9),
               "publish_us": busy / max(i, 1) / 1000.0, "frame_bytes": int(cfg["frame_bytes"])}
    gc.enable()
    if hasattr(tx, "stats"):
        res.update(tx.stats())
    emit(ev="result", role="producer", idx=0, **res)
    _finish(tx, cmds, sources[0] if big else None, float(cfg.get("finish_timeout", 20)))


# --------------------------------------------------------------- consumer

def _touch(buf: Any) -> int:
    """Read one byte of every page of the frame."""
    if np:
        return int(np.frombuffer(buf, dtype=np.uint8)[::PAGE].sum())
    return sum(memoryview(buf).cast("B")[::PAGE])


def run_consumer(rx: Any, cfg: Dict[str, Any]) -> None:
    pin_to(cfg.get("consumer_cpus"))
    scenario, mode = cfg["scenario"], cfg["mode"]
    idx = int(cfg.get("idx", 0))
    blocking = mode in ("block", "fd")
    yield_poll = False
    if mode == "fd" and getattr(rx, "wait_fd", None) is None:
        emit(ev="unsupported", role="consumer", idx=idx,
             reason=getattr(rx, "no_fd_reason", "no file descriptor for an event loop"))
        return
    if blocking and not rx.can_block and scenario in ("scale", "big", "rate") and rx.can_poll:
        blocking, yield_poll = False, scenario == "scale"  # the best this peer has
    if blocking and not rx.can_block:
        emit(ev="unsupported", role="consumer", idx=idx, reason=getattr(rx, "no_block_reason", "no blocking receive"))
        return
    if not blocking and not rx.can_poll and scenario in ("scale", "big", "rate") and rx.can_block:
        blocking = True
    if not blocking and not rx.can_poll:
        emit(ev="unsupported", role="consumer", idx=idx, reason=getattr(rx, "no_poll_reason", "no non-blocking receive"))
        return
    if blocking:
        wait = rx.wait_fd if mode == "fd" else rx.wait

        def recv() -> Any:
            return wait(0.05)
    else:
        recv = rx.poll
    deadline = time.monotonic() + float(cfg.get("ready_timeout", 60))
    while True:  # connected once a warm-up message arrives
        buf = recv()
        if buf is not None:
            rx.release()
            break
        if time.monotonic() > deadline:
            emit(ev="error", role="consumer", idx=idx, reason="no warm-up message arrived")
            return
        if not blocking:
            time.sleep(0.0002)
    info = getattr(rx, "fd_info" if mode == "fd" else "block_info", None) if blocking else None
    emit(ev="ready", role="consumer", idx=idx, pid=os.getpid(), info=info or getattr(rx, "info", {}))
    run_deadline_ns = now_ns() + int(float(cfg.get("run_timeout", 120)) * 1e9)
    big = scenario == "big"
    copy_mode = mode == "copy"
    dst: Any = None
    if big and copy_mode:
        n = int(cfg["frame_bytes"])
        dst = np.empty(n, dtype=np.uint8) if np else bytearray(n)
    lat = array("q")
    received = 0
    missed = 0
    dropped_sum = 0
    dropped_known = True
    invalid = 0
    first_id = last_id = 0
    t_first = t_last = 0
    sink = 0
    unpack = HDR.unpack_from
    dropped_total = getattr(rx, "dropped_total", None)
    total_first = 0
    gc.disable()
    while True:
        buf = recv()
        if buf is None:
            t = now_ns()
            if t > run_deadline_ns:
                break
            if yield_poll:
                time.sleep(0)
            continue
        t = rx.stamp or now_ns()
        fid, _sim, sent = unpack(buf)
        if fid == WARMUP_ID:
            rx.release()
            continue
        if fid == END_ID:
            rx.release()
            if dropped_total is not None and received:
                # What it skipped up to the last measured message: not the gap before this one.
                total, gap = dropped_total()
                dropped_sum = total - gap - total_first
            break
        if big:
            if copy_mode:
                if np:
                    np.copyto(dst, np.frombuffer(buf, dtype=np.uint8))
                else:
                    dst[:] = buf
            else:
                sink += _touch(buf)
            t = now_ns()
        if not rx.release():
            invalid += 1  # overwritten while we read it: not delivered
            continue
        if received == 0:
            first_id, t_first = fid, t
            if dropped_total is not None:
                total_first = dropped_total()[0]
        else:
            if fid > last_id + 1:
                missed += fid - last_id - 1
            # What the transport says it skipped since the previous measured
            # message; compared with the gaps in the ids.
            if dropped_total is None:
                d = rx.dropped
                if d is None:
                    dropped_known = False
                else:
                    dropped_sum += d
        received += 1
        last_id = fid
        t_last = t
        if scenario == "latency":
            lat.append(t - sent)
    gc.enable()
    if dropped_total is not None and received and fid != END_ID:  # out of time: no message came after the last
        dropped_sum = dropped_total()[0] - total_first
    window = (t_last - t_first) / 1e9 if received > 1 else 0.0
    res: Dict[str, Any] = {"recv": "block" if blocking else ("poll+yield" if yield_poll else "poll"),
                           "received": received, "first_id": first_id, "last_id": last_id,
                           "missed_by_id": missed, "window_s": window,
                           "rate_hz": (received - 1) / window if window > 0 else 0.0,
                           "invalid": invalid}
    if dropped_known and received:
        res["dropped_reported"] = dropped_sum
    if scenario == "latency":
        res["latency"] = latency_stats(lat)
        if cfg.get("raw_samples"):
            res["samples"] = lat.tolist()  # the driver pools the parts of a round
    if big:
        nbytes = int(cfg["frame_bytes"])
        res["frame_bytes"] = nbytes
        res["fps"] = res["rate_hz"]
        res["gbps"] = res["rate_hz"] * nbytes / 1e9
        res["checksum"] = sink & 0xFFFF
    emit(ev="result", role="consumer", idx=idx, **res)


# ------------------------------------------------------------------ entry

def main(make_sender: Callable[[Dict[str, Any]], Any], make_receiver: Callable[[Dict[str, Any]], Any],
         probe: Callable[[], Dict[str, Any]], extra: Optional[Dict[str, Callable[[Dict[str, Any]], None]]] = None) -> None:
    cfg = json.loads(sys.argv[1])
    role = cfg["role"]
    if cfg.get("scenario") == "big" or role in ("probe", "loan"):
        load_numpy()
    try:
        if role == "probe":
            emit(ev="probe", python=sys.version.split()[0], numpy=bool(np), **probe())
            return
        if extra and role in extra:
            extra[role](cfg)
            return
        if role == "producer":
            tx = make_sender(cfg)
            try:
                run_producer(tx, cfg)
            finally:
                tx.close()
        elif role == "consumer":
            # Started together with the producer: retry until its channel exists.
            deadline = time.monotonic() + float(cfg.get("ready_timeout", 60))
            while True:
                try:
                    rx = make_receiver(cfg)
                    break
                except Unsupported:
                    raise
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            try:
                run_consumer(rx, cfg)
            finally:
                rx.close()
        else:
            emit(ev="unsupported", role=role, reason=f"role {role!r} is not implemented by this peer")
    except Unsupported as exc:
        emit(ev="unsupported", role=role, idx=int(cfg.get("idx", 0)), reason=str(exc))
    except KeyboardInterrupt:
        emit(ev="error", role=role, idx=int(cfg.get("idx", 0)), reason="interrupted")
    except Exception as exc:  # reported to the driver, which marks the run failed
        emit(ev="error", role=role, idx=int(cfg.get("idx", 0)),
             reason=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-3000:])


class Unsupported(Exception):
    """The peer has no such mode (reported as n/a, not as a failure)."""


def time_loop(fn: Callable[[], Any], min_s: float = 0.2, batch: int = 1000) -> float:
    """Nanoseconds per call of ``fn``: the best of many short batches (about
    2 ms each, ``min_s`` in all), so that a batch in which the process was
    preempted - frequent on a shared machine - does not count."""
    n = max(1, batch // 10)
    while True:  # a batch size that runs about 2 ms
        t0 = now_ns()
        for _ in range(n):
            fn()
        dt = now_ns() - t0
        if dt > 2_000_000 or n > 50_000_000:
            break
        n *= 2
    best = dt / n
    end = now_ns() + int(min_s * 1e9)
    rounds = 0
    while now_ns() < end or rounds < 5:
        t0 = now_ns()
        for _ in range(n):
            fn()
        best = min(best, (now_ns() - t0) / n)
        rounds += 1
    return best
