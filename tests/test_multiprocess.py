"""Real processes (multiprocessing "spawn") on one region: many readers at
once, control messages from several clients, readers coming and going while
the producer runs, heartbeats, and processes killed with SIGKILL (a reader
holding a frame; a producer)."""
from __future__ import annotations

import os
import signal
import struct
import time

import numpy as np
import pytest

import shmx

from _helpers import (PROC_TIMEOUT, Workers, check_small, churn_worker, control_worker,
                      holder_worker, owner_worker, producer_worker, publish_small,
                      reader_worker, small_streams, waiter_worker, wait_until)

SHM_DIR = os.environ.get("SHMX_DIR") or "/dev/shm"

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")


def in_use(server):
    return [r for r in server.snapshot_readers() if r["in_use"]]


def address(view) -> int:
    return np.frombuffer(view, dtype=np.uint8).ctypes.data


def slots_used(server, client, count):
    """Publish ``count`` frames, reading each with ``client``; how many
    distinct slots did they land in?"""
    seen = set()
    for _ in range(count):
        seq = server.get_header_info()["frame_seq"] + 1
        assert publish_small(server, seq), server.last_error
        frame = client.get_latest_frame()
        assert frame["__metadata__"]["frame_id"] == seq
        assert check_small(frame) is None
        seen.add(address(frame["blob"]["data"]))
    return len(seen)


def test_sixteen_reader_processes(name):
    server = shmx.Server()
    assert server.create(name, slots=4, reader_slots=16, streams=small_streams())
    try:
        assert publish_small(server, 1)
        with Workers() as w:
            go, done = w.event(), w.event()
            procs = [w.start(reader_worker, i, name, go, done, 20, i % 2 == 0) for i in range(16)]
            ready = w.collect("ready", 16, timeout=60)
            assert server.get_header_info()["readers_connected"] == 16
            readers = in_use(server)
            assert {r["pid"] for r in readers} == {p.pid for p in procs}
            assert {r["reader_id"] for r in readers} == {m["reader_id"] for m in ready}
            assert len({m["reader_id"] for m in ready}) == 16
            assert all(r["alive"] is True for r in readers)
            # The seventeenth is refused, and says why.
            extra = shmx.Client()
            assert extra.open(name) is False
            assert "reader slots" in extra.last_error and "16" in extra.last_error
            go.set()
            seq, results = 1, []
            end = time.monotonic() + 60
            while len(results) < 16 and time.monotonic() < end:
                seq += 1
                assert publish_small(server, seq), server.last_error
                results += w.poll(timeout=0.001)
            assert len(results) == 16, f"only {len(results)} readers finished"
            for r in results:
                assert r["errors"] == [] and r["backwards"] == 0, r
                assert r["seen"] == 20
            done.set()
            assert w.join() == [0] * 16
        assert server.get_header_info()["readers_connected"] == 0
        assert in_use(server) == []
    finally:
        server.destroy()


def test_control_messages_from_several_processes(name):
    server = shmx.Server()
    assert server.create(name, reader_slots=8, control_per_reader=1024, streams=small_streams())
    try:
        count, senders = 300, 3
        with Workers() as w:
            done = w.event()
            for who in range(senders):
                w.start(control_worker, who, name, count, done)
            got = {who: [] for who in range(senders)}
            empties, reader_ids = {}, {}
            end = time.monotonic() + PROC_TIMEOUT
            while len(empties) < senders and time.monotonic() < end:
                server.wait_control(0.1)
                for m in server.poll_control():
                    if m["type"] >= 0x2000:
                        who = m["type"] - 0x2000
                        empties[who] = m["data"]
                    else:
                        who = m["type"] - 0x1000
                        got[who].append(m["data"])
                    reader_ids.setdefault(who, set()).add(m["reader_id"])
            results = {m["who"]: m for m in w.collect("result", senders)}
            done.set()
            assert w.join() == [0] * senders
        for who in range(senders):
            expected = [struct.pack("<II", who, k) + bytes((who + k + i) & 0xFF for i in range(k % 61))
                        for k in range(count)]
            assert got[who] == expected, f"sender {who}: messages lost, reordered or damaged"
            assert empties[who] == b""
            assert reader_ids[who] == {results[who]["reader_id"]}
    finally:
        server.destroy()


def test_readers_attach_and_leave_while_producer_runs(name):
    with Workers() as w:
        stop = w.event()
        w.start(producer_worker, "producer", name, stop, 0.0005)
        w.collect("ready", 1)
        insp = shmx.Inspector()
        assert insp.open(name)
        try:
            churners = 4
            for who in range(churners):
                w.start(churn_worker, who, name, 12)
            peak = 0
            results = []
            end = time.monotonic() + 60
            while len(results) < churners and time.monotonic() < end:
                peak = max(peak, insp.get_header_info()["readers_connected"])
                results += w.poll(timeout=0.01)
            assert len(results) == churners
            for r in results:
                assert r["errors"] == [] and r["cycles"] == 12, r
                assert 1 <= r["crowd"] <= churners, r
            assert peak <= churners
            assert wait_until(lambda: insp.get_header_info()["readers_connected"] == 0, 10)
            assert not any(r["in_use"] for r in insp.get_readers_info())
            stop.set()
            (final,) = w.collect("result", 1)
            assert final["published"] > 12 and final["connected"] == 0
            assert w.join()[0] == 0
        finally:
            insp.close()
    assert not os.path.exists(os.path.join(SHM_DIR, name))


def test_heartbeats_of_a_reader_process(name):
    server = shmx.Server()
    assert server.create(name, slots=4, streams=small_streams())
    try:
        assert publish_small(server, 1)
        with Workers() as w:
            go, done = w.event(), w.event()
            proc = w.start(reader_worker, 0, name, go, done, 100, False)
            w.collect("ready", 1)
            (first,) = in_use(server)
            assert first["pid"] == proc.pid and first["alive"] is True
            hb0 = first["heartbeat"]
            assert 0 < hb0 <= time.monotonic_ns()  # the clock of time.monotonic_ns()
            go.set()
            seq, results, samples = 1, [], []
            end = time.monotonic() + PROC_TIMEOUT
            while not results and time.monotonic() < end:
                seq += 1
                assert publish_small(server, seq)
                results += w.poll(timeout=0.002)
                samples.append(in_use(server)[0])
            assert results and results[0]["errors"] == [] and results[0]["seen"] == 100
            last = in_use(server)[0]
            beats = [r["heartbeat"] for r in samples] + [last["heartbeat"]]
            assert beats == sorted(beats), "heartbeat went backwards"
            assert last["heartbeat"] > hb0, "heartbeat never moved while the reader read"
            assert last["heartbeat"] <= time.monotonic_ns()
            assert last["last_frame_seen"] == results[0]["last"]
            assert last["frames_read"] >= 100
            assert len({r["heartbeat"] for r in samples}) > 2  # it kept beating, not once
            insp = shmx.Inspector()
            assert insp.open(name)
            try:
                seen = [r for r in insp.get_readers_info() if r["in_use"]]
                assert [r["pid"] for r in seen] == [proc.pid]
                assert seen[0]["heartbeat"] == last["heartbeat"]
            finally:
                insp.close()
            done.set()
            assert w.join() == [0]
        assert in_use(server) == []
    finally:
        server.destroy()


def _start_holder(w, server, name):
    proc = w.start(holder_worker, 0, name)
    (ready,) = w.collect("ready", 1)
    holder = [r for r in in_use(server) if r["pid"] == proc.pid]
    assert len(holder) == 1 and holder[0]["alive"] is True
    return proc, ready


def _kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(PROC_TIMEOUT)
    assert proc.exitcode == -signal.SIGKILL


def test_killed_reader_is_reaped_by_reap_stale_readers(name):
    server = shmx.Server()
    assert server.create(name, slots=3, reader_slots=4, streams=small_streams())
    local = shmx.Client()
    try:
        assert publish_small(server, 1)
        with Workers() as w:
            proc, ready = _start_holder(w, server, name)
            assert ready["frame_id"] == 1
            assert local.open(name)
            # The holder pins frame 1's slot: the producer goes round the other two.
            assert slots_used(server, local, 9) == 2
            _kill(proc)
            dead = [r for r in in_use(server) if r["pid"] == proc.pid]
            assert len(dead) == 1 and dead[0]["alive"] is False  # known dead, not yet reaped
            # A huge timeout: only the liveness lock can condemn the reader.
            assert server.reap_stale_readers(time.monotonic_ns(), 10 ** 15) == 1
            assert [r["reader_id"] for r in in_use(server)] == [local.reader_id]
            assert server.get_header_info()["readers_connected"] == 1
            assert server.reap_stale_readers(time.monotonic_ns(), 10 ** 15) == 0
            # Its pin is gone: every slot is written again.
            assert slots_used(server, local, 9) == 3
            assert server.get_header_info()["overruns"] == 0
    finally:
        local.close()
        server.destroy()


def test_killed_reader_is_reaped_when_producer_needs_its_slot(name):
    server = shmx.Server()
    assert server.create(name, slots=2, reader_slots=4, streams=small_streams())
    local = shmx.Client()
    try:
        assert publish_small(server, 1)
        with Workers() as w:
            proc, _ = _start_holder(w, server, name)
            _kill(proc)
            assert local.open(name)
            assert publish_small(server, 2)
            assert local.get_latest_frame()["__metadata__"]["frame_id"] == 2
            # Slot of frame 1: dead pin; slot of frame 2: pinned by `local`.
            # begin_frame must reap the dead reader rather than refuse.
            frame = server.begin_frame()
            assert frame is not None, server.last_error
            assert server.append_stream(frame, 1, (3).to_bytes(8, "little"), 1)
            blob = b"\x07" * 20
            assert server.append_stream(frame, 2, blob, len(blob))
            assert server.publish_frame(frame, 3.0)
            assert [r["reader_id"] for r in in_use(server)] == [local.reader_id]
            assert server.get_header_info()["overruns"] == 0
            assert slots_used(server, local, 6) == 2
    finally:
        local.close()
        server.destroy()


def test_killed_reader_is_reaped_while_producer_publishes(name):
    server = shmx.Server()
    assert server.create(name, slots=3, reader_slots=4, streams=small_streams())
    local = shmx.Client()
    try:
        assert publish_small(server, 1)
        with Workers() as w:
            proc, _ = _start_holder(w, server, name)
            _kill(proc)
            assert local.open(name)
            seq = 1

            def reaped():
                nonlocal seq
                for _ in range(16):
                    seq += 1
                    assert publish_small(server, seq)
                    local.get_latest_frame()
                return not any(r["pid"] == proc.pid for r in in_use(server))

            assert wait_until(reaped, PROC_TIMEOUT, interval=0.01), "dead reader never reaped"
            assert server.get_header_info()["readers_connected"] == 1
            assert slots_used(server, local, 9) == 3
    finally:
        local.close()
        server.destroy()


def test_killed_reader_slot_is_taken_over_by_a_new_reader(name):
    server = shmx.Server()
    assert server.create(name, slots=3, reader_slots=1, streams=small_streams())
    try:
        assert publish_small(server, 1)
        with Workers() as w:
            proc, _ = _start_holder(w, server, name)
            late = shmx.Client()
            assert late.open(name) is False and "reader slots" in late.last_error
            _kill(proc)
            assert late.open(name) is True, late.last_error
            try:
                assert publish_small(server, 2)
                assert late.get_latest_frame()["__metadata__"]["frame_id"] == 2
                assert [r["reader_id"] for r in in_use(server)] == [late.reader_id]
                assert server.get_header_info()["readers_connected"] == 1
            finally:
                late.close()
    finally:
        server.destroy()


def test_live_owner_in_another_process_keeps_its_name(name):
    with Workers() as w:
        proc = w.start(owner_worker, 0, name)
        (ready,) = w.collect("ready", 1)
        rival = shmx.Server()
        assert rival.create(name, streams=small_streams()) is False
        assert str(proc.pid) in rival.last_error
        client = shmx.Client()
        assert client.open(name)
        try:
            frame = client.get_latest_frame()
            assert check_small(frame) is None
            held = bytes(frame["blob"]["data"])
            assert client.server_alive() is True
            assert client.get_header_info()["owner_pid"] == proc.pid
            _kill(proc)
            assert client.server_alive() is False
            assert client.get_header_info()["owner_alive"] is False
            assert client.wait_frame(timeout=0.5) is None
            assert bytes(frame["blob"]["data"]) == held  # still mapped, unchanged
            # The dead owner's region is reclaimed by the next create.
            assert rival.create(name, streams=small_streams()) is True, rival.last_error
            try:
                h = rival.get_header_info()
                assert h["session_id"] != ready["session_id"] and h["owner_pid"] == os.getpid()
                assert publish_small(rival, 1)
                fresh = shmx.Client()
                assert fresh.open(name)
                try:
                    assert fresh.get_header_info()["session_id"] == h["session_id"]
                    assert check_small(fresh.get_latest_frame()) is None
                finally:
                    fresh.close()
            finally:
                rival.destroy()
        finally:
            client.close()
    assert not os.path.exists(os.path.join(SHM_DIR, name))


def test_waiting_reader_processes_learn_the_server_is_gone(name):
    """Readers waiting for frames in other processes stop waiting once the
    server is destroyed, and the frames they hold stay readable (no SIGBUS)
    and unchanged."""
    server = shmx.Server()
    assert server.create(name, slots=3, streams=small_streams())
    try:
        assert publish_small(server, 1)
        with Workers() as w:
            for who in range(3):
                w.start(waiter_worker, who, name)
            w.collect("ready", 3)
            # Let them reach their wait, then go away.
            time.sleep(0.2)
            server.destroy()
            results = w.collect("result", 3)
            assert w.join() == [0, 0, 0]
        for r in results:
            assert r["alive"] is False and r["same"] is True and r["after"] is True, r
    finally:
        server.destroy()
    assert not os.path.exists(os.path.join(SHM_DIR, name))
