"""Waits and close at any moment (issue #12's "close is safe" part):
close() from another thread, cancelled/timed-out await_frame, Ctrl-C to
frames()/aframes() in real subprocesses, timeout validation everywhere,
last_error after a timed-out wait, and the self-formatted C error message.
"""
from __future__ import annotations

import asyncio
import math
import os
import signal
import tempfile
import threading
import time

import pytest

import shmx
from _helpers import Child

SPEC = [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8)]


@pytest.fixture
def pair(name: str):
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    client = shmx.Client()
    assert client.open(name)
    yield srv, client
    client.close()
    srv.destroy()


@pytest.mark.parametrize("bad", [math.nan, -1, -0.001, "1", True])
def test_bad_timeouts_are_refused_everywhere(pair, name: str, bad) -> None:
    srv, client = pair
    calls = {
        "wait_frame": lambda: client.wait_frame(bad),
        "wait_next": lambda: client.wait_next(bad),
        "frames": lambda: next(client.frames(bad)),
        "wait_control": lambda: srv.wait_control(bad),
        "connect": lambda: shmx.connect(name, timeout=bad),
        "await_frame": lambda: asyncio.run(client.await_frame(bad)),
        "aframes": lambda: asyncio.run(client.aframes(bad).__anext__()),
        "await_control": lambda: asyncio.run(srv.await_control(bad)),
    }
    for call, fn in calls.items():
        with pytest.raises(shmx.InvalidArgumentError) as info:
            fn()
        assert call in str(info.value) and "timeout" in str(info.value), str(info.value)


def test_good_timeouts_are_accepted(pair, name: str) -> None:
    srv, client = pair
    for t in (0, 0.0, 0.01):
        assert client.wait_frame(t) is None
        assert client.wait_next(t) is None
        assert list(client.frames(t)) == []
        assert srv.wait_control(t) is False
        assert asyncio.run(client.await_frame(t)) is None
    shmx.connect(name, timeout=None).close()
    srv.publish_stream(1, (5).to_bytes(8, "little"))
    assert client.wait_frame(None) is not None


def test_last_error_after_timeout_is_this_objects_own(pair, name: str) -> None:
    srv, client = pair
    other = shmx.Client()
    assert not other.open("shmxtest-no-such-region-x")  # leaves a C error on this thread
    assert client.wait_frame(0.01) is None
    assert "no-such-region" not in client.last_error
    assert "within" in client.last_error and name in client.last_error
    assert not other.open("shmxtest-no-such-region-y")
    assert srv.wait_control(0.01) is False
    assert "no-such-region" not in srv.last_error and "wait_control" in srv.last_error


@pytest.mark.parametrize("how", ["wait_frame", "wait_next", "frames"])
def test_close_from_another_thread_wakes_the_waiter(pair, how: str) -> None:
    srv, client = pair
    result = []
    started = threading.Event()

    def waiter() -> None:
        started.set()
        if how == "frames":
            result.append(list(client.frames()))
        else:
            result.append(getattr(client, how)(None))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(10)
    time.sleep(0.1)  # inside the C wait by now
    t0 = time.monotonic()
    client.close()
    t.join(10)
    assert not t.is_alive(), "the waiter did not return after close()"
    print(f"close -> waiter returned in {1e3 * (time.monotonic() - t0):.1f} ms")
    assert result == [[]] if how == "frames" else result == [None]
    # The client is closed; a second close and more calls are harmless.
    client.close()
    assert client.wait_frame(0) is None and client.get_latest_frame() is None


def test_close_after_cancelled_and_timed_out_await_frame(name: str) -> None:
    """The SIGSEGV of #12: closing after asyncio.wait_for cancelled a wait."""
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    try:
        close_after_cancel(srv, name)
    finally:
        srv.destroy()


def close_after_cancel(srv: shmx.Server, name: str) -> None:
    for _ in range(20):
        client = shmx.Client()
        assert client.open(name)
        client.get_latest_frame()  # frames published before: seen

        async def main() -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.await_frame(), 0.001)
            assert await client.await_frame(0.001) is None
            client.close()

        asyncio.run(main())
        srv.publish_stream(1, (1).to_bytes(8, "little"))
    assert threading.active_count() == 1 or all(not t.name.startswith("asyncio")
                                                for t in threading.enumerate())


CTRL_C = """
import asyncio, sys, time, shmx
c = shmx.connect(sys.argv[1], timeout=10)
mode = sys.argv[2]
print("waiting", flush=True)
try:
    if mode == "frames":
        for f in c.frames():
            pass
    else:
        async def main():
            async for f in c.aframes():
                pass
        asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
    c.close()
    sys.exit(130)
print("ended without Ctrl-C", flush=True)
"""


@pytest.mark.parametrize("mode", ["frames", "aframes"])
def test_ctrl_c_ends_frames_and_aframes(name: str, mode: str) -> None:
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    child = Child(CTRL_C, name, mode)
    try:
        child.wait_for("waiting")
        time.sleep(0.3)  # well inside its wait
        sent = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        line = child.wait_for("interrupted", timeout=20)
        took = float(line.split()[1]) - sent
        print(f"{mode}: SIGINT -> KeyboardInterrupt in {1e3 * took:.1f} ms")
        assert child.proc.wait(20) == 130
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(10)
        srv.destroy()


def test_error_formatted_from_the_error_buffer_is_not_garbled() -> None:
    """create over a directory: the C message embeds the previous message
    of the same thread-local buffer (csrc/common.c shmx_fail)."""
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(os.path.join(d, "taken"))
        srv = shmx.Server()
        assert not srv.create("taken", shm_dir=d)
        msg = srv.last_error
        assert "exists and cannot be opened: cannot open" in msg, msg
        assert msg.count("exists and cannot be opened") == 1, msg
        assert msg.endswith("Is a directory"), msg


CLOSE_RACE = """
import sys, threading, shmx
srv = shmx.Server()
assert srv.create(sys.argv[1], streams=[shmx.create_stream_spec(1, "x", shmx.DT_U8, 1, 1)], slots=4)
srv.publish_stream(1, b"a")
for round in range(200):
    c = shmx.Client()
    assert c.open(sys.argv[1])
    stop = False
    def hammer():
        while not stop:
            c.get_latest_frame(); c.read_next(); c.get_header_info(); c.server_alive(); c.release()
    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads: t.start()
    srv.publish_stream(1, bytes([round % 256]))
    c.close()            # while the other threads are inside calls on it
    stop = True
    for t in threads: t.join(10)
srv.destroy()
print("ok", flush=True)
"""


def test_close_while_other_threads_call_the_client(name: str) -> None:
    """close() from one thread while others are inside reads: no crash and no
    exception in the readers (the C handle stays allocated through every call
    in flight; a read after the close returns None/{} with last_error)."""
    child = Child(CLOSE_RACE, name)
    assert child.wait_for("ok", timeout=120) == "ok"
    assert child.proc.wait(30) == 0, child.stderr()
    # Before: a call that checked _c and then used it raised TypeError in
    # the reading threads when close() came in between.
    err = child.stderr()
    assert "Traceback" not in err and "Exception in thread" not in err, err[-3000:]
