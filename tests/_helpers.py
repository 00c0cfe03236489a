"""Shared pieces of the core API, multi-process and stress tests.

* frame contents derived from a sequence number, so any reader can check
  every byte of a frame it got without talking to the producer;
* ``Workers``: spawned worker processes (multiprocessing "spawn": a forked
  child would inherit the parent's file descriptors and with them its
  liveness locks) with one result queue, joined or killed on exit;
* the worker functions themselves (they must live in an importable module).

Every wait here is bounded: a broken library makes a test fail, never hang.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import selectors
import signal
import struct
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import shmx

CTX = multiprocessing.get_context("spawn")

# Upper bound for any single wait on another process (spawning a Python
# child on two busy cores can take a few seconds).
PROC_TIMEOUT = 30.0


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.002) -> bool:
    """Poll ``predicate`` until it is truthy (True) or ``timeout`` passes (False)."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


# --------------------------------------------------------------- patterns
#
# "seq"-keyed patterns.  A torn frame (parts of two frames) or a frame
# rewritten under a reader cannot match the pattern of the seq it claims.
# numpy is imported only by the stress patterns, so that the many small
# worker processes start quickly.

_BASE: Any = None


def _base() -> Any:
    global _BASE
    if _BASE is None:
        import numpy as np
        _BASE = np.random.default_rng(20240611).integers(0, 256, size=(2 << 20) + 4096, dtype=np.uint8)
    return _BASE


def small_streams() -> List[Dict[str, Any]]:
    """Schema of the multi-process tests: a u64 sequence number and a blob."""
    return [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
            shmx.create_stream_spec(2, "blob", shmx.DT_U8, 1, 1)]


def small_blob(seq: int) -> bytes:
    n = 16 + (seq * 37) % 300
    return bytes(((seq * 31 + i * 7) & 0xFF) for i in range(n))


def publish_small(server: shmx.Server, seq: int, retry_for: float = 5.0) -> bool:
    """Publish the small frame ``seq``; ``begin_frame`` may refuse while
    readers pin every slot, so retry for a bounded time."""
    end = time.monotonic() + retry_for
    while True:
        frame = server.begin_frame()
        if frame is not None:
            break
        if time.monotonic() >= end:
            return False
        time.sleep(0.0005)
    blob = small_blob(seq)
    return (server.append_stream(frame, 1, struct.pack("<Q", seq), 1)
            and server.append_stream(frame, 2, blob, len(blob))
            and server.publish_frame(frame, float(seq)))


def check_small(frame: Dict[str, Any]) -> Optional[str]:
    """None if ``frame`` is a correct small frame, else what is wrong."""
    md = frame["__metadata__"]
    if set(frame) != {"__metadata__", "seq", "blob"}:
        return f"frame {md['frame_id']}: streams {sorted(frame)}"
    seq = struct.unpack("<Q", frame["seq"]["data"])[0]
    if md["sim_time"] != float(seq):
        return f"frame {md['frame_id']}: sim_time {md['sim_time']} for seq {seq}"
    if bytes(frame["blob"]["data"]) != small_blob(seq):
        return f"frame {md['frame_id']}: blob does not match seq {seq}"
    if frame["blob"]["elem_count"] != len(small_blob(seq)) or frame["seq"]["elem_count"] != 1:
        return f"frame {md['frame_id']}: wrong elem_count"
    return None


def stress_streams() -> List[Dict[str, Any]]:
    """Schema of the stress tests: four streams of different types."""
    return [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
            shmx.create_stream_spec(2, "bytes", shmx.DT_U8, 1, 1),
            shmx.create_stream_spec(3, "words", shmx.DT_U32, 1, 4),
            shmx.create_stream_spec(4, "loaned", shmx.DT_F64, 2, 16, shmx.LAYOUT_AOS_VECTOR)]


def stress_sizes(seq: int, max_bytes: int) -> tuple:
    """(bytes in "bytes", elements in "words", elements in "loaned") of frame ``seq``."""
    low = min(4096, max_bytes)
    nbytes = low + (seq * 7919) % (max_bytes - low + 1)
    return nbytes, 1 + (seq * 31) % 2048, 1 + seq % 97


def stress_bytes(seq: int, n: int, out: Any = None) -> Any:
    import numpy as np
    base = _base()
    off = (seq * 104729) % (len(base) - n)
    return np.bitwise_xor(base[off:off + n], np.uint8(seq & 0xFF), out=out)


def stress_words(seq: int, n: int) -> Any:
    import numpy as np
    return np.arange(n, dtype=np.uint32) * np.uint32(2654435761) + np.uint32(seq & 0xFFFFFFFF)


def stress_floats(seq: int, n: int) -> Any:
    import numpy as np
    return (np.arange(2 * n, dtype=np.float64) * 0.25 + seq).reshape(n, 2)


def check_stress(frame: Dict[str, Any], max_bytes: int) -> Optional[str]:
    """None if every byte of ``frame`` is what its seq says, else the error."""
    import numpy as np
    md = frame["__metadata__"]
    fid = md["frame_id"]
    if set(frame) != {"__metadata__", "seq", "bytes", "words", "loaned"}:
        return f"frame {fid}: streams {sorted(frame)}"
    seq = struct.unpack("<Q", frame["seq"]["data"])[0]
    if seq != fid or md["sim_time"] != float(seq) or md["tlv_count"] != 4:
        return f"frame {fid}: seq {seq}, sim_time {md['sim_time']}, tlv_count {md['tlv_count']}"
    nbytes, nwords, nfloats = stress_sizes(seq, max_bytes)
    b, w, f = frame["bytes"], frame["words"], frame["loaned"]
    if (b["elem_count"], w["elem_count"], f["elem_count"]) != (nbytes, nwords, nfloats):
        return f"frame {fid}: elem counts {b['elem_count']}, {w['elem_count']}, {f['elem_count']}"
    if (b["bytes"], w["bytes"], f["bytes"]) != (nbytes, 4 * nwords, 16 * nfloats):
        return f"frame {fid}: byte counts {b['bytes']}, {w['bytes']}, {f['bytes']}"
    if not np.array_equal(np.frombuffer(b["data"], dtype=np.uint8), stress_bytes(seq, nbytes)):
        return f"frame {fid}: 'bytes' differs from its pattern"
    if not np.array_equal(np.frombuffer(w["data"], dtype="<u4"), stress_words(seq, nwords)):
        return f"frame {fid}: 'words' differs from its pattern"
    if not np.array_equal(np.frombuffer(f["data"], dtype="<f8").reshape(-1, 2), stress_floats(seq, nfloats)):
        return f"frame {fid}: 'loaned' differs from its pattern"
    return None


# ---------------------------------------------------------------- workers

class Workers:
    """Spawned worker processes reporting through one queue.  Leaving the
    ``with`` block joins them, killing any that are still alive."""

    def __init__(self) -> None:
        self.queue = CTX.Queue()
        self.procs: List[Any] = []
        self._held: List[Dict[str, Any]] = []
        self._events: List[Any] = []

    def start(self, target: Callable[..., Any], *args: Any) -> Any:
        proc = CTX.Process(target=target, args=(self.queue,) + args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def counters(self, n: int) -> Any:
        """``n`` integers shared with the workers."""
        return CTX.Array("q", n)

    def event(self) -> Any:
        """An Event for the workers; all of them are set on exit, so a
        failing test lets every worker finish (and clean up) rather than
        being killed."""
        ev = CTX.Event()
        self._events.append(ev)
        return ev

    def collect(self, kind: str, count: int, timeout: float = PROC_TIMEOUT) -> List[Dict[str, Any]]:
        """``count`` messages of ``kind`` from the workers.  A worker that
        reports an error, or silence until ``timeout``, fails the test."""
        end = time.monotonic() + timeout
        got = [m for m in self._held if m["kind"] == kind][:count]
        for m in got:
            self._held.remove(m)
        while len(got) < count:
            left = end - time.monotonic()
            if left <= 0:
                dead = [(p.pid, p.exitcode) for p in self.procs if p.exitcode is not None]
                raise AssertionError(f"only {len(got)} of {count} '{kind}' messages within "
                                     f"{timeout} s; exited workers (pid, code): {dead}")
            try:
                msg = self.queue.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if msg["kind"] == "error":
                raise AssertionError(f"worker {msg.get('who')} failed:\n{msg['trace']}")
            if msg["kind"] == kind:
                got.append(msg)
            else:
                self._held.append(msg)
        return got

    def poll(self, timeout: float = 0.0) -> List[Dict[str, Any]]:
        """Messages available now (waiting up to ``timeout`` for the first);
        a worker's error report fails the test."""
        out: List[Dict[str, Any]] = []
        while True:
            try:
                msg = self.queue.get(timeout=timeout) if timeout and not out else self.queue.get_nowait()
            except queue.Empty:
                return out
            if msg["kind"] == "error":
                raise AssertionError(f"worker {msg.get('who')} failed:\n{msg['trace']}")
            out.append(msg)

    def join(self, timeout: float = PROC_TIMEOUT) -> List[Optional[int]]:
        end = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(end - time.monotonic(), 0.01))
        return [p.exitcode for p in self.procs]

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc: Any) -> None:
        for ev in self._events:
            ev.set()
        end = time.monotonic() + 10.0
        for p in self.procs:
            p.join(max(end - time.monotonic(), 0.01))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(5.0)
        self.queue.close()
        self.queue.cancel_join_thread()


class _Job:
    """A picklable worker target: runs the module function named ``body``;
    an exception becomes an "error" message (with the traceback) instead of
    a silent exit."""

    def __init__(self, body: str) -> None:
        self.body = body

    def __call__(self, q: Any, who: Any, *args: Any) -> None:
        try:
            globals()[self.body](q, who, *args)
        except BaseException:  # noqa: BLE001 - report everything to the parent
            q.put({"kind": "error", "who": who, "trace": traceback.format_exc()})


def _worker(fn: Callable[..., Any]) -> _Job:
    return _Job(fn.__name__)


def _connect(name: str) -> shmx.Client:
    return shmx.connect(name, timeout=PROC_TIMEOUT)


def _reader_body(q: Any, who: int, name: str, go: Any, done: Any, want: int, use_wait: bool) -> None:
    """Attach, report, then read until ``want`` distinct frames were seen
    (each checked byte for byte); report, and stay attached until ``done``."""
    client = _connect(name)
    try:
        q.put({"kind": "ready", "who": who, "pid": os.getpid(), "reader_id": client.reader_id})
        if not go.wait(PROC_TIMEOUT):
            raise RuntimeError("never told to start")
        seen, last, errors, backwards = 0, 0, [], 0
        end = time.monotonic() + PROC_TIMEOUT
        while seen < want and time.monotonic() < end:
            frame = client.wait_frame(timeout=0.2) if use_wait else client.get_latest_frame()
            if frame is None:
                if not use_wait:
                    time.sleep(0.0005)
                continue
            fid = frame["__metadata__"]["frame_id"]
            if fid < last:
                backwards += 1
            err = check_small(frame)
            if err:
                errors.append(err)
            if fid > last:
                seen += 1
                last = fid
        # Let go of the last frame: a reader that keeps a frame pins its
        # slot, and once every slot is pinned the producer is refused.
        client.release()
        q.put({"kind": "result", "who": who, "seen": seen, "errors": errors[:5],
               "backwards": backwards, "last": last})
        done.wait(PROC_TIMEOUT)
    finally:
        client.close()


reader_worker = _worker(_reader_body)


def _holder_body(q: Any, who: int, name: str) -> None:
    """Attach, take the latest frame (pinning its slot), report, then sleep
    until killed (bounded, so an orphan cannot live forever)."""
    client = _connect(name)
    frame = None
    end = time.monotonic() + PROC_TIMEOUT
    while frame is None and time.monotonic() < end:
        frame = client.get_latest_frame()
    if frame is None:
        raise RuntimeError(f"no frame: {client.last_error}")
    q.put({"kind": "ready", "who": who, "pid": os.getpid(), "reader_id": client.reader_id,
           "frame_id": frame["__metadata__"]["frame_id"]})
    time.sleep(PROC_TIMEOUT * 2)


holder_worker = _worker(_holder_body)


def _owner_body(q: Any, who: int, name: str) -> None:
    """Create the region, publish one frame, report, sleep until killed."""
    server = shmx.Server()
    if not server.create(name, slots=3, streams=small_streams()):
        raise RuntimeError(server.last_error)
    if not publish_small(server, 1):
        raise RuntimeError(server.last_error)
    q.put({"kind": "ready", "who": who, "pid": os.getpid(),
           "session_id": server.get_header_info()["session_id"]})
    time.sleep(PROC_TIMEOUT * 2)
    server.destroy()


owner_worker = _worker(_owner_body)


def _producer_body(q: Any, who: int, name: str, stop: Any, interval: float) -> None:
    """Create the region and publish small frames until ``stop``."""
    server = shmx.Server()
    if not server.create(name, slots=4, reader_slots=16, streams=small_streams()):
        raise RuntimeError(server.last_error)
    try:
        seq = 0
        q.put({"kind": "ready", "who": who, "pid": os.getpid()})
        end = time.monotonic() + PROC_TIMEOUT * 2
        while not stop.is_set() and time.monotonic() < end:
            seq += 1
            if not publish_small(server, seq):
                raise RuntimeError(f"publish {seq}: {server.last_error}")
            if interval:
                time.sleep(interval)
        q.put({"kind": "result", "who": who, "published": seq,
               "connected": server.get_header_info()["readers_connected"]})
    finally:
        server.destroy()


producer_worker = _worker(_producer_body)


def _churn_body(q: Any, who: int, name: str, cycles: int) -> None:
    """Attach, wait for a frame newer than the one at attach, check it,
    leave; ``cycles`` times."""
    errors: List[str] = []
    crowd = 0  # most readers attached at once, as seen by this one
    for _ in range(cycles):
        client = _connect(name)
        try:
            header = client.get_header_info()
            start = header["frame_seq"]
            crowd = max(crowd, header["readers_connected"])
            frame = client.wait_frame(timeout=PROC_TIMEOUT)
            if frame is None:
                raise RuntimeError(f"wait_frame: {client.last_error}")
            if frame["__metadata__"]["frame_id"] <= start - 1:
                errors.append(f"frame {frame['__metadata__']['frame_id']} older than {start}")
            err = check_small(frame)
            if err:
                errors.append(err)
        finally:
            client.close()
    q.put({"kind": "result", "who": who, "cycles": cycles, "errors": errors[:5], "crowd": crowd})


churn_worker = _worker(_churn_body)


def _control_body(q: Any, who: int, name: str, count: int, done: Any) -> None:
    """Send ``count`` numbered control messages (retrying while the ring is
    full), then one empty message; stay attached until ``done``."""
    client = _connect(name)
    try:
        full = 0
        end = time.monotonic() + PROC_TIMEOUT
        for k in range(count):
            body = struct.pack("<II", who, k) + bytes((who + k + i) & 0xFF for i in range(k % 61))
            while not client.send_control(0x1000 + who, body):
                if "full" not in client.last_error or time.monotonic() > end:
                    raise RuntimeError(f"send_control {k}: {client.last_error}")
                full += 1
                time.sleep(0.0005)
        while not client.send_control_empty(0x2000 + who):
            if time.monotonic() > end:
                raise RuntimeError(f"send_control_empty: {client.last_error}")
            time.sleep(0.0005)
        q.put({"kind": "result", "who": who, "reader_id": client.reader_id, "full": full})
        done.wait(PROC_TIMEOUT)
    finally:
        client.close()


control_worker = _worker(_control_body)


def _waiter_body(q: Any, who: int, name: str) -> None:
    """Hold a frame, then wait for more until the server goes away; check
    the held frame is still readable (and unchanged) afterwards."""
    client = _connect(name)
    try:
        frame = None
        end = time.monotonic() + PROC_TIMEOUT
        while frame is None and time.monotonic() < end:
            frame = client.get_latest_frame()
        if frame is None:
            raise RuntimeError(client.last_error)
        held = bytes(frame["blob"]["data"])
        view = frame["blob"]["data"]
        q.put({"kind": "ready", "who": who, "pid": os.getpid()})
        rounds = 0
        # A second client does the waiting: reads on it leave the first
        # client's pinned frame alone.
        watcher = _connect(name)
        try:
            while time.monotonic() < end:
                rounds += 1
                if watcher.wait_frame(timeout=0.5) is None and watcher.server_alive() is False:
                    break
        finally:
            watcher.close()
        q.put({"kind": "result", "who": who, "alive": client.server_alive(),
               "same": bytes(view) == held, "rounds": rounds,
               "after": client.wait_frame(timeout=0.2) is None})
    finally:
        client.close()


waiter_worker = _worker(_waiter_body)


def _stress_producer_body(q: Any, who: int, name: str, go: Any, stop: Any, release: Any,
                          max_bytes: int, slots: int) -> None:
    """Publish pattern frames at full speed from ``go`` to ``stop``; keep the
    region until ``release`` so readers can drain it."""
    server = shmx.Server()
    if not server.create(name, slots=slots, reader_slots=8, frame_bytes_cap=max_bytes + 64 * 1024,
                         streams=stress_streams()):
        raise RuntimeError(server.last_error)
    try:
        q.put({"kind": "ready", "who": who, "pid": os.getpid()})
        import numpy as np
        scratch = np.empty(max_bytes, dtype=np.uint8)
        stress_bytes(1, 16)  # builds the pattern source now, not on the clock
        if not go.wait(PROC_TIMEOUT):
            raise RuntimeError("never told to start")
        seq, busy = 0, 0
        end = time.monotonic() + PROC_TIMEOUT
        while not stop.is_set() and time.monotonic() < end:
            frame = server.begin_frame()
            if frame is None:  # every slot pinned by a reader: try again
                busy += 1
                continue
            seq += 1
            nbytes, nwords, nfloats = stress_sizes(seq, max_bytes)
            data = stress_bytes(seq, nbytes, out=scratch[:nbytes])
            ok = (server.append_stream(frame, 1, struct.pack("<Q", seq), 1)
                  and server.append_stream(frame, 2, data, nbytes)
                  and server.append_stream(frame, 3, stress_words(seq, nwords), nwords))
            if not ok:
                raise RuntimeError(f"append {seq}: {server.last_error}")
            view = server.loan(frame, 4, nfloats)  # written in place: zero-copy publish
            arr = np.frombuffer(view, dtype="<f8").reshape(-1, 2)
            arr[:] = stress_floats(seq, nfloats)
            del arr
            if not server.publish_frame(frame, float(seq)):
                raise RuntimeError(f"publish {seq}: {server.last_error}")
        q.put({"kind": "produced", "who": who, "published": seq, "busy": busy,
               "frame_seq": server.get_header_info()["frame_seq"],
               "overruns": server.get_header_info()["overruns"]})
        release.wait(PROC_TIMEOUT)
    finally:
        server.destroy()


stress_producer = _worker(_stress_producer_body)


def _check_stream_read(client: Any, view: Any, max_bytes: int) -> Optional[str]:
    """None if ``view``, the "bytes" stream get_latest_stream() returned, is
    what the frame it came from (``client.frame_id``) says, else the error."""
    import numpy as np
    fid = client.frame_id
    nbytes = stress_sizes(fid, max_bytes)[0]
    if len(view) != nbytes or client.sim_time != float(fid):
        return f"frame {fid}: {len(view)} bytes, sim_time {client.sim_time}"
    if not np.array_equal(np.frombuffer(view, dtype=np.uint8), stress_bytes(fid, nbytes)):
        return f"frame {fid}: 'bytes' differs from its pattern (get_latest_stream)"
    return None


def _stress_latest_body(q: Any, who: int, name: str, go: Any, seconds: float, want: int,
                        max_bytes: int, mode: str) -> None:
    """get_latest_frame (mode "latest"), wait_frame ("wait") or
    get_latest_stream(new_only=True) ("stream") as fast as possible for
    ``seconds`` (longer, up to PROC_TIMEOUT, until ``want`` distinct frames
    were seen: on a crowded machine a few seconds may not be enough); check
    every byte of every frame."""
    client = _connect(name)
    try:
        q.put({"kind": "ready", "who": who, "pid": os.getpid()})
        if not go.wait(PROC_TIMEOUT):
            raise RuntimeError("never told to start")
        checks, distinct, last, backwards, none, repeats = 0, 0, 0, 0, 0, 0
        errors: List[str] = []
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if (elapsed >= seconds and distinct >= want) or elapsed >= PROC_TIMEOUT:
                break
            if mode == "stream":
                view = client.get_latest_stream("bytes", new_only=True)
                if view is None:
                    none += 1
                    time.sleep(0.0002)
                    continue
                fid = client.frame_id
                backwards += fid <= last
                err = _check_stream_read(client, view, max_bytes)
                checks += 1
                distinct += 1
                last = fid
                if err:
                    errors.append(err if len(errors) < 5 else "...")
                continue
            frame = client.wait_frame(timeout=0.1) if mode == "wait" else client.get_latest_frame()
            if frame is None:
                none += 1
                time.sleep(0.0002)
                continue
            fid = frame["__metadata__"]["frame_id"]
            if fid < last:
                backwards += 1
            if fid == last:
                # The frame we hold, again: check now and then that it has
                # not changed, otherwise leave the CPU to the producer.
                repeats += 1
                if repeats % 8:
                    time.sleep(0.0002)
                    continue
            err = check_stress(frame, max_bytes)
            checks += 1
            if err and len(errors) < 5:
                errors.append(err)
            elif err:
                errors.append("...")
            if fid > last:
                distinct += 1
                last = fid
        q.put({"kind": "result", "who": who, "checks": checks, "distinct": distinct,
               "backwards": backwards, "errors": errors[:6], "nerrors": len(errors), "none": none})
    finally:
        client.close()


stress_latest_reader = _worker(_stress_latest_body)


def _stress_next_body(q: Any, who: int, name: str, go: Any, done: Any, progress: Any,
                      max_bytes: int) -> None:
    """read_next in order until the producer is done and every frame is
    accounted for (read or reported dropped); check every byte.  Frames
    read so far go to ``progress[who]``."""
    client = _connect(name)
    try:
        q.put({"kind": "ready", "who": who, "pid": os.getpid()})
        if not go.wait(PROC_TIMEOUT):
            raise RuntimeError("never told to start")
        first = last = None
        frames = dropped = 0
        errors: List[str] = []
        end = time.monotonic() + PROC_TIMEOUT
        while time.monotonic() < end:
            frame = client.read_next()
            if frame is None:
                if done.is_set() and last is not None and last == client.get_header_info()["frame_seq"]:
                    break
                time.sleep(0.0002)  # caught up: leave the CPU to the producer
                continue
            md = frame["__metadata__"]
            fid, gap = md["frame_id"], md["dropped"]
            if first is None:
                first = fid
                if gap != 0:
                    errors.append(f"first read reports {gap} dropped")
            elif fid != last + 1 + gap:
                errors.append(f"frame {fid} after {last} reports {gap} dropped")
            err = check_stress(frame, max_bytes)
            if err:
                errors.append(err)
            frames += 1
            dropped += gap
            last = fid
            progress[who] = frames
        # The library's own counters in our reader slot must agree.
        insp = shmx.Inspector()
        counters = None
        if insp.open(name):
            try:
                mine = [r for r in insp.get_readers_info() if r["in_use"] and r["pid"] == os.getpid()]
                if mine:
                    counters = (mine[0]["frames_read"], mine[0]["frames_dropped"])
            finally:
                insp.close()
        q.put({"kind": "result", "who": who, "first": first, "last": last, "frames": frames,
               "dropped": dropped, "errors": errors[:5], "nerrors": len(errors),
               "counters": counters})
    finally:
        client.close()


stress_next_reader = _worker(_stress_next_body)


ROOT = Path(__file__).resolve().parent.parent


class Child:
    """A Python child with the repository on its path; its stdout lines can
    be awaited with a timeout."""

    def __init__(self, code: str, *args: str, env: Optional[Dict[str, str]] = None) -> None:
        prog = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(code)
        self.proc = subprocess.Popen([sys.executable, "-c", prog, *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.lines: List[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def line(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                raise AssertionError(f"child {self.pid}: no line within {timeout} s "
                                     f"(after {self.lines[-5:]}); {self.stderr()}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"child {self.pid} exited {self.proc.wait()} "
                                     f"(after {self.lines[-5:]}): {self.stderr()}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        self.lines.append(raw.decode())
        return self.lines[-1]

    def wait_for(self, wanted: str, timeout: float = 30.0) -> str:
        """Read lines until one starts with `wanted`."""
        for line in self.lines:
            if line.startswith(wanted):
                return line
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(deadline - time.monotonic(), 0.01))
            if line.startswith(wanted):
                return line

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")[-3000:]

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def close(self) -> None:
        self.kill9()
        self._sel.close()
        self.proc.stdout.close()
        self.proc.stderr.close()
