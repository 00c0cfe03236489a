"""Benchmark worker for what the standard library offers without any package.

Three variants (``cfg["variant"]``):

* ``shm``: ``multiprocessing.shared_memory`` with a seqlock ring written
  here, the strongest honest version of a do-it-yourself ring: the
  producer copies each message into the next slot's preallocated view
  between two stores of the slot's sequence word (odd while writing) and
  then stores the frame number in the header; a reader takes the newest
  (or, for the rate scenario, the next) frame in place with two loads of
  the sequence word (before and after use), through views made once, with
  no per-frame allocation of its own.  x86-64 only (see below).  Its
  blocking wait (Linux) sleeps in FUTEX_WAIT on the header's frame-number
  word through ctypes, and a producer whose consumers block wakes it
  after every frame (pure Python has no atomic RMW for a sleeper flag,
  and a flag without one can lose a wake-up).  So only the latency
  scenario blocks on it; in the others its consumers poll (and yield, in
  the scaling runs), which costs its producer nothing per frame.
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

import ctypes
import multiprocessing as mp
import os
import queue as queue_mod
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import Unsupported  # noqa: E402
from multiprocessing import shared_memory  # noqa: E402

HEADER = 64         # words: magic, latest frame number, slots, slot stride, message bytes
SLOT_HEAD = 64      # the slot's sequence word, alone on its cache line; the payload follows
MAGIC = 0x474E4952434F4C52


def _align(n, a=64):
    return (n + a - 1) // a * a


# The futex(2) calls of the blocking ring (Linux x86-64: SYS_futex is 202).
# Not FUTEX_PRIVATE_FLAG: the word is shared between processes.  ctypes
# releases the GIL around the call.
SYS_FUTEX, FUTEX_WAIT, FUTEX_WAKE = 202, 0, 1
CAN_FUTEX = sys.platform.startswith("linux") and os.uname().machine == "x86_64"


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _futex():
    libc = ctypes.CDLL(None, use_errno=True)
    call = libc.syscall
    call.restype = ctypes.c_long
    call.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p,
                     ctypes.c_void_p, ctypes.c_uint32]
    return call


# ------------------------------------------------------------ seqlock ring
#
# Slot k holds frame n (k = n % slots).  Its sequence word is 2n - 1 while
# frame n is being written and 2n once it is complete, so one load tells a
# reader both "not being written" and "still frame n": reading frame n in
# place is load seq (== 2n), read, load seq again (still 2n, or the read was
# torn).  The header's latest word is stored after the slot's final seq.
# Plain Python has no atomics or fences: the 8-byte words are stored and
# loaded through a memoryview cast to 'Q' (one aligned access each) and the
# ordering relies on x86's total store order, so the ring is sound on
# x86-64 only.  The slot views are made once: a send copies into one, a
# receive returns one, and neither side allocates a buffer per frame.

class RingSender:
    lossy = True

    def __init__(self, cfg):
        big = cfg["scenario"] == "big"
        # As many slots as shmx gets in each scenario (tools/bench_peers/shmx_worker.py).
        slots = 4 if big else 8 if cfg["scenario"] == "latency" else 64
        nbytes = int(cfg["frame_bytes"])
        stride = SLOT_HEAD + _align(nbytes)
        self.shm = shared_memory.SharedMemory(name=cfg["name"], create=True, size=HEADER + slots * stride)
        buf = self.shm.buf
        words = buf.cast("Q")
        words[1] = 0
        words[2] = slots
        words[3] = stride
        words[4] = nbytes
        words[0] = MAGIC
        seq_i = [(HEADER + k * stride) >> 3 for k in range(slots)]
        views = [buf[HEADER + k * stride + SLOT_HEAD:HEADER + k * stride + SLOT_HEAD + nbytes]
                 for k in range(slots)]
        self._views, self._words, self._buf = views, words, buf
        n = 0

        def send(msg):
            nonlocal n
            n += 1
            k = n % slots
            i = seq_i[k]
            two_n = n + n
            words[i] = two_n - 1     # odd: frame n is being written
            views[k][:] = msg        # the message is exactly nbytes long
            words[i] = two_n         # complete (x86 keeps the stores in order)
            words[1] = n             # publish

        self.send = send
        self.send_big = send
        self.info = {"mode": f"shared_memory seqlock ring ({slots} slots), copy into a preallocated slot view"}
        self._word = None
        if cfg.get("consumer_mode") == "block" and cfg["scenario"] == "latency" and CAN_FUTEX:
            # The low half of the frame-number word is the futex word.
            self._word = ctypes.c_uint32.from_buffer(buf, 8)
            addr, futex = ctypes.addressof(self._word), _futex()

            def send_wake(msg):
                send(msg)
                futex(SYS_FUTEX, addr, FUTEX_WAKE, 0x7FFFFFFF, None, None, 0)

            self.send = send_wake
            self.info = {"mode": self.info["mode"] + ", then FUTEX_WAKE (ctypes)"}

    def close(self):
        for v in self._views:
            v.release()
        self._words.release()
        self._word = None  # a ctypes view of the buffer: gone before the close
        self._buf = None
        self.shm.close()
        self.shm.unlink()


class RingReceiver:
    can_poll = True
    can_block = False  # set per run: True in the latency scenario on Linux x86-64
    no_block_reason = "its futex wait is Linux x86-64 only"

    def __init__(self, cfg):
        try:
            self.shm = shared_memory.SharedMemory(name=cfg["name"], track=False)  # 3.13+
        except TypeError:
            self.shm = shared_memory.SharedMemory(name=cfg["name"])
            # Before 3.13 an attaching process registers the segment with the
            # resource tracker, which would unlink it when we exit.
            from multiprocessing import resource_tracker
            resource_tracker.unregister(self.shm._name, "shared_memory")
        buf = self.shm.buf
        words = buf.cast("Q")
        if words[0] != MAGIC:
            raise RuntimeError("ring is not initialised")
        slots, stride, nbytes = words[2], words[3], words[4]
        seq_i = [(HEADER + k * stride) >> 3 for k in range(slots)]
        views = [buf[HEADER + k * stride + SLOT_HEAD:HEADER + k * stride + SLOT_HEAD + nbytes]
                 for k in range(slots)]
        self._views, self._words, self._buf = views, words, buf
        self.stamp = 0
        self.dropped = None
        last = 0
        held_i = 0       # the slot word and value the frame handed out was read at
        held_seq = 0
        rx = self

        def poll_latest():
            nonlocal last, held_i, held_seq
            n = words[1]
            if n == last:
                return None
            k = n % slots
            i = seq_i[k]
            two_n = n + n
            if words[i] != two_n:
                return None      # being rewritten with a newer frame: the next poll finds that
            last, held_i, held_seq = n, i, two_n
            return views[k]      # in place

        total = gap = 0  # the frames skipped in all, and before the last one

        def poll_next():
            nonlocal last, held_i, held_seq, total, gap
            latest = words[1]
            if latest == last:
                return None
            want = last + 1
            if latest - want >= slots - 1:
                want = latest - slots + 2  # overrun: the oldest frame the writer is not rewriting
            k = want % slots
            i = seq_i[k]
            two_n = want + want
            if words[i] != two_n:
                return None
            gap = want - last - 1 if last else 0
            total += gap
            last, held_i, held_seq = want, i, two_n
            return views[k]

        def dropped_total():
            return total, gap

        def release():
            return words[held_i] == held_seq  # the second load: unchanged, so the read was not torn

        self._word = None
        self.can_block = CAN_FUTEX and cfg["scenario"] == "latency"  # the producer wakes only there
        if self.can_block:
            self._word = ctypes.c_uint32.from_buffer(buf, 8)  # the frame-number word's low half
            addr, futex, ts = ctypes.addressof(self._word), _futex(), _Timespec()
            ts_ref = ctypes.byref(ts)

            def wait(timeout):
                f = poll_latest()
                if f is not None:
                    return f
                ts.tv_sec = int(timeout)
                ts.tv_nsec = int((timeout - int(timeout)) * 1e9)
                # Sleeps only while the word still holds the last frame
                # number seen (the kernel compares it under its lock).
                futex(SYS_FUTEX, addr, FUTEX_WAIT, last & 0xFFFFFFFF, ts_ref, None, 0)
                return poll_latest()

            self.wait = wait
            self.block_info = {"mode": "seqlock ring, FUTEX_WAIT (ctypes) on the frame number, newest frame"}

        in_order = cfg["scenario"] == "rate"
        self.poll = poll_next if in_order else poll_latest
        if in_order:
            self.dropped_total = dropped_total
        self.release = release
        self.info = {"mode": "seqlock ring, newest frame in place (two seq loads, no allocation)" if not in_order
                     else "seqlock ring, next frame in order in place (dropped = ring overrun)"}

    def close(self):
        for v in self._views:
            v.release()
        self._words.release()
        self._word = None
        self._buf = None
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
