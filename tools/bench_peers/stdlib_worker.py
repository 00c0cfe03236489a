"""Benchmark worker for what the standard library offers without any package.

Three variants (``cfg["variant"]``):

* ``shm``: ``multiprocessing.shared_memory`` with a seqlock ring written
  here: the producer copies each message into the next slot between two
  bumps of the slot's sequence word (odd while writing) and then stores the
  frame number in the header; a reader takes the newest (or, for the rate
  scenario, the next) frame in place, zero copy, and re-checks the sequence
  after use.  Plain Python has no atomics or fences: the 8-byte words are
  written through a ``memoryview`` cast to ``'Q'`` (one aligned store each)
  and the ordering relies on x86's total store order, so this variant is
  only sound on x86-64.  No blocking wait exists for it.
* ``pipe``: ``multiprocessing.Pipe(duplex=False)``, one per consumer (a pipe
  has one reader), ``send_bytes``/``recv_bytes`` (``recv_bytes_into`` a
  preallocated buffer for large frames).  Blocks the producer when full.
* ``queue``: ``multiprocessing.Queue``, one per consumer, ``put``/``get``
  (objects are pickled by a feeder thread).  Bounded, blocks when full.

Pipe and Queue ends can only be handed to processes that the creator starts,
so for those two the producer forks its consumers itself; they print their
own lines (under a shared lock) on the same stdout.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import Unsupported  # noqa: E402
from multiprocessing import shared_memory  # noqa: E402

HEADER = 64         # magic, latest frame number, slots, slot bytes
SLOT_HEAD = 64      # seq, frame number, length
MAGIC = 0x474E4952434F4C51


def _align(n, a=64):
    return (n + a - 1) // a * a


# ------------------------------------------------------------ seqlock ring

class RingSender:
    lossy = True

    def __init__(self, cfg):
        big = cfg["scenario"] == "big"
        # As many slots as shmx gets in each scenario (tools/bench_peers/shmx_worker.py).
        self.slots = 4 if big else 8 if cfg["scenario"] == "latency" else 64
        self.cap = _align(int(cfg["frame_bytes"]))
        self.stride = SLOT_HEAD + self.cap
        size = HEADER + self.slots * self.stride
        self.shm = shared_memory.SharedMemory(name=cfg["name"], create=True, size=size)
        self.buf = self.shm.buf
        self.words = self.buf.cast("Q")
        w = self.words
        w[1] = 0
        w[2] = self.slots
        w[3] = self.stride
        w[0] = MAGIC
        self.n = 0
        self.info = {"mode": f"shared_memory seqlock ring ({self.slots} slots), copy into the slot"}

    def send(self, msg):
        n = self.n = self.n + 1
        base = HEADER + (n % self.slots) * self.stride
        w = self.words
        i = base >> 3
        seq = w[i]
        w[i] = seq + 1          # odd: being written
        w[i + 1] = n
        w[i + 2] = len(msg)
        off = base + SLOT_HEAD
        self.buf[off:off + len(msg)] = msg
        w[i] = seq + 2          # even: complete (x86 keeps stores in order)
        w[1] = n                # publish

    send_big = send

    def close(self):
        self.words.release()
        self.buf = None
        self.shm.close()
        self.shm.unlink()


class RingReceiver:
    can_poll = True
    can_block = False
    no_block_reason = "a plain seqlock ring has no wake-up (only polling)"

    def __init__(self, cfg):
        try:
            self.shm = shared_memory.SharedMemory(name=cfg["name"], track=False)  # 3.13+
        except TypeError:
            self.shm = shared_memory.SharedMemory(name=cfg["name"])
            # Before 3.13 an attaching process registers the segment with the
            # resource tracker, which would unlink it when we exit.
            from multiprocessing import resource_tracker
            resource_tracker.unregister(self.shm._name, "shared_memory")
        self.buf = self.shm.buf
        self.words = self.buf.cast("Q")
        w = self.words
        if w[0] != MAGIC:
            raise RuntimeError("ring is not initialised")
        self.slots, self.stride = w[2], w[3]
        self.last = 0
        self.seq_i = 0
        self.seq = 0
        self.stamp = 0
        self.dropped = None
        self.in_order = cfg["scenario"] == "rate"
        self.info = {"mode": "seqlock ring, newest frame in place" if not self.in_order
                     else "seqlock ring, next frame in order (dropped = ring overrun)"}

    def _take(self, n):
        base = HEADER + (n % self.slots) * self.stride
        i = base >> 3
        w = self.words
        seq = w[i]
        if seq & 1 or w[i + 1] != n:
            return None  # being rewritten, or already holds a newer frame
        self.seq_i, self.seq = i, seq
        off = base + SLOT_HEAD
        return self.buf[off:off + w[i + 2]]

    def poll(self):
        latest = self.words[1]
        if latest == self.last:
            return None
        if not self.in_order:
            view = self._take(latest)
            if view is not None:
                self.last = latest
            return view
        want = self.last + 1
        if latest - want >= self.slots - 1:
            want = latest - self.slots + 2  # overrun: skip to the oldest safe frame
        view = self._take(want)
        if view is None:
            return None
        self.dropped = want - self.last - 1 if self.last else 0
        self.last = want
        return view

    def release(self):
        return self.words[self.seq_i] == self.seq  # unchanged: the read was not torn

    def close(self):
        self.words.release()
        self.buf = None
        self.shm.close()


# ------------------------------------------------------ forked consumers

class _ForkedSender:
    """Pipe/Queue producer: forks one consumer process per channel."""
    lossy = False

    def __init__(self, cfg, make_channel, make_receiver, pipes):
        ctx = mp.get_context("fork")
        self.lock = ctx.Lock()
        common.set_emit_lock(self.lock)
        n = int(cfg.get("n_consumers", 1))
        self.children = []
        chans = [make_channel(ctx) for _ in range(n)]  # (write end, read end)
        for idx, (_wr, rd) in enumerate(chans):
            ccfg = dict(cfg, role="consumer", idx=idx, mode=cfg["consumer_mode"])
            p = ctx.Process(target=_child, args=(make_receiver, ccfg, self.lock, chans, idx, pipes),
                            daemon=True)
            p.start()
            self.children.append(p)
        self.ends = [wr for wr, _rd in chans]
        if pipes:
            for _wr, rd in chans:
                rd.close()  # only the child reads: its exit then shows up as EPIPE here

    def close(self):
        for end in self.ends:
            if hasattr(end, "cancel_join_thread"):
                end.cancel_join_thread()  # do not hang on exit for unread items
        for p in self.children:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


def _child(make_receiver, cfg, lock, chans, idx, pipes):
    common.set_emit_lock(lock)
    if pipes:  # keep only our own read end
        for k, (wr, rd) in enumerate(chans):
            wr.close()
            if k != idx:
                rd.close()
    rx = make_receiver(chans[idx][1], cfg)
    try:
        common.run_consumer(rx, cfg)
    except Exception as exc:  # reported like any worker error
        common.emit(ev="error", role="consumer", idx=cfg["idx"], reason=f"{type(exc).__name__}: {exc}")
    os._exit(0)


class PipeReceiver:
    can_poll = True
    can_block = True

    def __init__(self, conn, cfg):
        self.conn = conn
        self.stamp = 0
        self.dropped = None
        big = cfg["scenario"] == "big"
        recv_bytes, conn_poll = conn.recv_bytes, conn.poll
        if big:
            n = int(cfg["frame_bytes"])
            store = bytearray(n)
            view = memoryview(store)
            into = conn.recv_bytes_into

            def get():
                return view[:into(store)]
        else:
            get = recv_bytes

        def poll():
            return get() if conn_poll() else None

        def wait(timeout):
            return get() if conn_poll(timeout) else None

        self.poll, self.wait = poll, wait
        self.info = {"mode": "Pipe poll() + recv_bytes busy-poll (recv_bytes_into for large frames)"}
        self.block_info = {"mode": "Pipe recv_bytes blocking (poll(timeout))"}

    def release(self):
        return True

    def close(self):
        self.conn.close()


class PipeSender(_ForkedSender):
    def __init__(self, cfg):
        def channel(ctx):
            rd, wr = ctx.Pipe(duplex=False)
            return wr, rd
        super().__init__(cfg, channel, PipeReceiver, pipes=True)
        conns = list(self.ends)

        def send(msg):
            for c in conns:
                c.send_bytes(msg)

        self.send = send
        self.send_big = send
        self.info = {"mode": "Pipe(duplex=False).send_bytes, one pipe per consumer"}

    def close(self):
        for c in self.ends:
            c.close()
        super().close()


class QueueReceiver:
    can_poll = True
    can_block = True

    def __init__(self, q, cfg):
        self.q = q
        self.stamp = 0
        self.dropped = None
        get_nowait, get = q.get_nowait, q.get
        empty = queue_mod.Empty

        def poll():
            try:
                return get_nowait()
            except empty:
                return None

        def wait(timeout):
            try:
                return get(True, timeout)
            except empty:
                return None

        self.poll, self.wait = poll, wait
        self.info = {"mode": "Queue.get_nowait busy-poll"}
        self.block_info = {"mode": "Queue.get blocking"}

    def release(self):
        return True

    def close(self):
        pass


class QueueSender(_ForkedSender):
    def __init__(self, cfg):
        size = 4 if cfg["scenario"] == "big" else 1000

        def channel(ctx):
            q = ctx.Queue(maxsize=size)
            return q, q
        super().__init__(cfg, channel, QueueReceiver, pipes=False)
        queues = list(self.ends)

        def send(msg):
            for q in queues:
                q.put(msg)

        self.send = send
        self.send_big = send
        self.info = {"mode": f"Queue(maxsize={size}).put, one queue per consumer (pickled)"}


# ------------------------------------------------------------------ entry

def make_sender(cfg):
    v = cfg["variant"]
    if v == "shm":
        return RingSender(cfg)
    if v == "pipe":
        return PipeSender(cfg)
    if v == "queue":
        return QueueSender(cfg)
    raise Unsupported(f"unknown variant {v!r}")


def make_receiver(cfg):
    if cfg["variant"] != "shm":
        raise Unsupported("pipe/queue consumers are forked by their producer")
    return RingReceiver(cfg)


def probe():
    return {"version": sys.version.split()[0]}


if __name__ == "__main__":
    common.main(make_sender, make_receiver, probe)
