"""Multi-process behaviour that must hold on Linux and on Windows alike:
spawned reader processes checking every byte, control messages from
several processes, and a producer and a reader killed mid-operation
(``Process.kill()``: SIGKILL on POSIX, TerminateProcess on Windows).

tests/test_multiprocess.py covers more of this with POSIX signals; this
file is the part that tests/test_windows.py also runs under wine with the
Windows CPython.  Where the platforms differ it says so: a killed
producer's region stays behind as a stale file on Linux (the next create
reclaims it), while on Windows a named mapping vanishes with its last
handle.
"""
from __future__ import annotations

import gc
import os
import struct
import sys
import time

import pytest

import shmx
from _helpers import (PROC_TIMEOUT, Workers, check_small, control_worker, holder_worker,
                      owner_worker, publish_small, reader_worker, small_streams)

WINDOWS = sys.platform == "win32"
SHM_DIR = os.environ.get("SHMX_DIR") or "/dev/shm"


def in_use(server: shmx.Server) -> list:
    return [r for r in server.snapshot_readers() if r["in_use"]]


def kill(proc) -> None:
    proc.kill()
    proc.join(PROC_TIMEOUT)
    assert proc.exitcode is not None and proc.exitcode != 0


def test_reader_processes_check_every_byte(name: str) -> None:
    server = shmx.Server()
    assert server.create(name, slots=4, reader_slots=8, streams=small_streams())
    try:
        assert publish_small(server, 1)
        with Workers() as w:
            go, done = w.event(), w.event()
            procs = [w.start(reader_worker, i, name, go, done, 20, i % 2 == 0) for i in range(4)]
            w.collect("ready", 4, timeout=60)
            readers = in_use(server)
            assert {r["pid"] for r in readers} == {p.pid for p in procs}
            assert all(r["alive"] is True for r in readers)
            go.set()
            seq, results = 1, []
            end = time.monotonic() + 60
            while len(results) < 4 and time.monotonic() < end:
                seq += 1
                assert publish_small(server, seq), server.last_error
                results += w.poll(timeout=0.001)
            assert len(results) == 4, f"only {len(results)} readers finished"
            for r in results:
                assert r["errors"] == [] and r["backwards"] == 0 and r["seen"] == 20, r
            done.set()
            assert w.join() == [0] * 4
        assert server.get_header_info()["readers_connected"] == 0
    finally:
        server.destroy()


def test_control_messages_from_several_processes(name: str) -> None:
    server = shmx.Server()
    assert server.create(name, reader_slots=4, control_per_reader=1024, streams=small_streams())
    try:
        count, senders = 200, 3
        with Workers() as w:
            done = w.event()
            for who in range(senders):
                w.start(control_worker, who, name, count, done)
            got = {who: [] for who in range(senders)}
            empties = {}
            end = time.monotonic() + PROC_TIMEOUT
            while len(empties) < senders and time.monotonic() < end:
                server.wait_control(0.1)
                for m in server.poll_control():
                    if m["type"] >= 0x2000:
                        empties[m["type"] - 0x2000] = m["data"]
                    else:
                        got[m["type"] - 0x1000].append(m["data"])
            assert sorted(empties) == list(range(senders))
            for who in range(senders):
                assert len(got[who]) == count
                for k, body in enumerate(got[who]):
                    assert body == struct.pack("<II", who, k) + bytes((who + k + i) & 0xFF
                                                                     for i in range(k % 61))
            w.collect("result", senders)
            done.set()
            assert w.join() == [0] * senders
    finally:
        server.destroy()


def test_killed_producer(name: str) -> None:
    with Workers() as w:
        proc = w.start(owner_worker, 0, name)
        (ready,) = w.collect("ready", 1)
        client = shmx.connect(name, timeout=PROC_TIMEOUT)
        try:
            frame = client.get_latest_frame()
            assert frame is not None and check_small(frame) is None
            assert client.server_alive() is True
            assert client.get_header_info()["session_id"] == ready["session_id"]
            kill(proc)
            assert client.server_alive() is False
            assert client.wait_frame(timeout=0.5) is None
        finally:
            client.close()
    # A kept frame keeps the memory mapped (its views point into it).
    del frame
    gc.collect()
    if WINDOWS:
        # The last view and handle are gone, and so is the region: nothing stale.
        with pytest.raises(shmx.RegionNotFoundError):
            shmx.connect(name)
    else:
        path = os.path.join(SHM_DIR, name)
        assert os.path.exists(path)  # stale until reclaimed
        os.unlink(path)
    server = shmx.Server()
    assert server.create(name, streams=small_streams()), server.last_error
    server.destroy()


def test_killed_reader_is_reaped(name: str) -> None:
    server = shmx.Server()
    assert server.create(name, slots=3, reader_slots=4, streams=small_streams())
    try:
        assert publish_small(server, 1)
        with Workers() as w:
            proc = w.start(holder_worker, 0, name)
            (ready,) = w.collect("ready", 1)
            assert ready["frame_id"] == 1
            held = [r for r in in_use(server) if r["pid"] == proc.pid]
            assert len(held) == 1 and held[0]["alive"] is True
            kill(proc)
            dead = [r for r in in_use(server) if r["pid"] == proc.pid]
            assert len(dead) == 1 and dead[0]["alive"] is False
            assert server.reap_stale_readers(time.monotonic_ns(), 10 ** 15) == 1
            assert in_use(server) == []
            assert server.get_header_info()["readers_connected"] == 0
            for seq in range(2, 12):  # its pin is gone: no slot stays blocked
                assert publish_small(server, seq, retry_for=0.5), server.last_error
    finally:
        server.destroy()
