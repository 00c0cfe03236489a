"""Control rings under stress: several client processes send messages of
random sizes with sequence numbers into small rings; the server must get
every accepted message exactly once, intact, in order per client.  A full
ring makes send_control return False and never corrupts anything.
"""
from __future__ import annotations

import os
import random
import selectors
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List

import pytest

import shmx

ROOT = Path(__file__).resolve().parent.parent
U8 = [shmx.create_stream_spec(1, "bytes", shmx.DT_U8, 1, 1)]
PATTERN = bytes(range(256)) * 8


def message(tag: int, seq: int, size: int) -> bytes:
    """12-byte head (sender, sequence, body size), then a body derived from both."""
    start = (tag * 131 + seq * 17) % 256
    return struct.pack("<III", tag, seq, size) + PATTERN[start:start + size]


class Checker:
    """Every message intact, and per sender in order with no gap or repeat."""

    def __init__(self) -> None:
        self.next_seq: Dict[int, int] = {}
        self.bytes = 0

    def check(self, msg: Dict) -> None:
        data = msg["data"]
        assert msg["type"] == shmx.TLV_CONTROL_USER, msg
        tag, seq, size = struct.unpack_from("<III", data)
        assert data == message(tag, seq, size), f"sender {tag} message {seq} is corrupt"
        want = self.next_seq.get(tag, 0)
        assert seq == want, f"sender {tag}: message {seq} arrived, expected {want}"
        self.next_seq[tag] = seq + 1
        self.bytes += len(data)


SENDER = """
    import random, struct, sys, time
    sys.path.insert(0, sys.argv[1])
    import shmx
    name, tag, count, max_size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    PATTERN = bytes(range(256)) * 8
    rng = random.Random(tag)
    c = shmx.connect(name, timeout=20)
    print("attached", flush=True)
    seq = full = 0
    deadline = time.monotonic() + 60
    while seq < count and time.monotonic() < deadline:
        size = rng.choice((0, 1, 15, 16, 17, rng.randrange(max_size + 1)))
        start = (tag * 131 + seq * 17) % 256
        data = struct.pack("<III", tag, seq, size) + PATTERN[start:start + size]
        if c.send_control(shmx.TLV_CONTROL_USER, data):
            seq += 1
        else:
            assert "full" in c.last_error, c.last_error
            full += 1
            if full % 64 == 0:
                time.sleep(0.0002)
    print("sent", seq, full, flush=True)
    c.close()
"""


def test_several_clients_every_message_once_intact_in_order(name):
    clients, per_client, ring = 4, 2500, 512
    s = shmx.serve(name, U8, slots=2, reader_slots=clients, frame_bytes_cap=64,
                   control_per_reader=ring)
    procs: List[subprocess.Popen] = []
    checker = Checker()
    try:
        for tag in range(clients):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(SENDER), str(ROOT), name, str(tag),
                 str(per_client), str(ring // 3)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            msgs = s.poll_control(128)
            for m in msgs:
                checker.check(m)
            if all(checker.next_seq.get(t, 0) == per_client for t in range(clients)):
                break
            if not msgs:
                s.wait_control(0.02)
            # Throttle now and then, so the rings do fill up.
            if random.random() < 0.02:
                time.sleep(0.005)
        outs = [p.communicate(timeout=60) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
        sent = [tuple(map(int, out.split()[-2:])) for out, _ in outs]
        assert [n for n, _ in sent] == [per_client] * clients, sent
        assert checker.next_seq == {t: per_client for t in range(clients)}, checker.next_seq
        assert s.poll_control() == []  # nothing extra, nothing twice
        # The small rings filled up for real, and send_control said so.
        assert sum(full for _, full in sent) > 0, sent
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        s.destroy()


def test_full_ring_refuses_without_corrupting(name):
    ring = 256
    s = shmx.serve(name, U8, slots=2, reader_slots=1, frame_bytes_cap=64, control_per_reader=ring)
    c = shmx.connect(name)
    checker = Checker()
    rng = random.Random(3)
    seq = 0
    try:
        for cycle in range(200):
            # Fill until refused: every size, so the wrap point moves around.
            accepted = 0
            while True:
                size = rng.randrange(0, 100)
                if not c.send_control(shmx.TLV_CONTROL_USER, message(0, seq, size)):
                    assert "full" in c.last_error, c.last_error
                    break
                seq += 1
                accepted += 1
                assert accepted < ring, "a 256-byte ring accepted too much"
            # A refused message does not appear, the accepted ones all do.
            if cycle % 2:
                for m in s.poll_control():
                    checker.check(m)
                assert checker.next_seq.get(0, 0) == seq
            else:  # drain only part of it, then fill again
                for m in s.poll_control(max(1, accepted // 2)):
                    checker.check(m)
        for m in s.poll_control():
            checker.check(m)
        assert checker.next_seq[0] == seq and seq > 250
        # Drained: a message of the largest size the ring can hold fits, at
        # the latest once the server has consumed the padding that takes the
        # writer back to the start of the ring.
        largest = ring - 16 - 8 - 12
        if not c.send_control(shmx.TLV_CONTROL_USER, message(0, seq, largest)):
            assert "full" in c.last_error
            assert s.poll_control() == []  # only the padding was there
            assert c.send_control(shmx.TLV_CONTROL_USER, message(0, seq, largest)), c.last_error
        [m] = s.poll_control()
        checker.check(m)
    finally:
        c.close()
        s.destroy()


def test_message_larger_than_ring_and_type_zero_are_refused(name):
    s = shmx.serve(name, U8, slots=2, reader_slots=1, frame_bytes_cap=64, control_per_reader=128)
    c = shmx.connect(name)
    try:
        assert c.send_control(shmx.TLV_CONTROL_USER, b"x" * 500) is False
        assert "ring holds" in c.last_error, c.last_error
        assert c.send_control(0, b"pad") is False and "type 0" in c.last_error
        assert c.send_control(shmx.TLV_CONTROL_USER, b"") is True
        assert c.send_control(shmx.TLV_CONTROL_USER + 5, b"ok") is True
        msgs = s.poll_control()
        assert [(m["type"], m["data"]) for m in msgs] == [(shmx.TLV_CONTROL_USER, b""),
                                                          (shmx.TLV_CONTROL_USER + 5, b"ok")]
        assert all(m["reader_id"] == c.reader_id for m in msgs)
    finally:
        c.close()
        s.destroy()


def test_no_control_rings_configured(name):
    s = shmx.serve(name, U8, slots=2, reader_slots=1, frame_bytes_cap=64, control_per_reader=0)
    c = shmx.connect(name)
    try:
        assert c.send_control(shmx.TLV_CONTROL_USER, b"x") is False
        assert "no control rings" in c.last_error
        assert s.poll_control() == []
    finally:
        c.close()
        s.destroy()
