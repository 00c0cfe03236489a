"""Late joiners (Client.open(history=True), shmx.connect(history=True)) and
Server.wait_readers(), with the producer and the readers in separate
processes and every frame's bytes checked."""
from __future__ import annotations

import struct

import pytest

import shmx
from _helpers import Child

SPEC = [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
        shmx.create_stream_spec(2, "blob", shmx.DT_U8, 1, 1)]


def blob(k: int) -> bytes:
    return bytes((k * 7 + i) & 0xFF for i in range(16 + k % 5))


def publish(srv: shmx.Server, k: int) -> None:
    srv.publish({1: struct.pack("<Q", k), 2: blob(k)})


READER = """
import struct, sys, shmx
c = shmx.connect(sys.argv[1], timeout=10, history=sys.argv[2] == "1")
got = []
while True:
    f = c.read_next()
    if f is None:
        break
    k = struct.unpack("<Q", f["seq"]["data"])[0]
    ok = bytes(f["blob"]["data"]) == bytes((k * 7 + i) & 0xFF for i in range(16 + k % 5))
    got.append((k, f["__metadata__"]["dropped"], ok))
print("got", got, flush=True)
c.close()
"""


@pytest.mark.parametrize("history", [True, False])
def test_late_joiner_gets_every_retained_frame_in_order(name: str, history: bool) -> None:
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC, slots=8)
    try:
        for k in range(1, 21):  # 20 frames, 8 slots: frames 13..20 retained
            publish(srv, k)
        child = Child(READER, name, "1" if history else "0")
        got = eval(child.wait_for("got").split(" ", 1)[1])
        assert child.proc.wait(30) == 0
        if history:
            assert [k for k, _, _ in got] == list(range(13, 21))
            assert all(ok for _, _, ok in got)
            assert got[0][1] == 0 and all(d == 0 for _, d, _ in got)
        else:
            assert [k for k, _, _ in got] == [20]  # the newest only
    finally:
        srv.destroy()


def test_history_reader_that_joins_before_any_frame_reads_from_the_first(name: str) -> None:
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC, slots=4)
    try:
        c = shmx.connect(name, history=True)
        assert c.read_next() is None
        for k in range(1, 4):
            publish(srv, k)
        ids = []
        while (f := c.read_next()) is not None:
            ids.append(struct.unpack("<Q", f["seq"]["data"])[0])
        assert ids == [1, 2, 3]
        c.close()
    finally:
        srv.destroy()


def test_wait_readers(name: str) -> None:
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    try:
        assert srv.wait_readers(0, timeout=0) is True
        assert srv.wait_readers(1, timeout=0.05) is False
        assert "wait_readers" in srv.last_error
        children = [Child("""
            import sys, time, shmx
            c = shmx.connect(sys.argv[1], timeout=10)
            print("open", flush=True)
            time.sleep(30)
        """, name) for _ in range(2)]
        try:
            assert srv.wait_readers(2, timeout=30) is True
            assert srv.get_header_info()["readers_connected"] >= 2
        finally:
            for ch in children:
                ch.proc.kill()
                ch.proc.wait(10)
        with pytest.raises(shmx.InvalidArgumentError):
            srv.wait_readers(1, timeout=float("nan"))
        with pytest.raises(shmx.InvalidArgumentError):
            srv.wait_readers(-1)
    finally:
        srv.destroy()
    assert srv.wait_readers(1, timeout=1) is False
    assert "destroyed" in srv.last_error or "not created" in srv.last_error
