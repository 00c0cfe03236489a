"""The event-loop wake fds (csrc/wakefd.c): Client.fileno(), Server.control_fileno(),
await_frame/aframes/await_control on loop.add_reader, selectors, trio/anyio.

Real processes: the producer (or the consumer) runs in a child, the other
side in the test, and every frame's bytes are checked.
"""
from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import struct
import threading
import time

import pytest

import shmx
from _helpers import Child

SPEC = [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8)]


def records(fd: int) -> int:
    """How many wake records wait on a client's wake fd (reads them)."""
    n = 0
    while True:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return n
        if not data:
            return n
        n += 1


PRODUCER = """
import sys, time, shmx
name = sys.argv[1]
srv = shmx.Server()
assert srv.create(name, streams=[shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8)], slots=8)
print("ready", srv.get_header_info()["session_id"], flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "pub":
        for i in range(int(cmd[1]), int(cmd[2])):
            srv.publish_stream(1, i.to_bytes(8, "little"))
        print("done", flush=True)
    elif cmd[0] == "destroy":
        srv.destroy()
        print("destroyed", flush=True)
    elif cmd[0] == "sleep":
        time.sleep(60)
"""


def start_producer(name: str) -> Child:
    import subprocess
    import sys
    from _helpers import ROOT
    import textwrap
    child = Child.__new__(Child)
    prog = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(PRODUCER)
    child.proc = subprocess.Popen([sys.executable, "-c", prog, name], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child._buf = b""
    child._sel = selectors.DefaultSelector()
    child._sel.register(child.proc.stdout, selectors.EVENT_READ)
    child.lines = []
    return child


def say(child: Child, text: str) -> None:
    child.proc.stdin.write((text + "\n").encode())
    child.proc.stdin.flush()


def stop(child: Child) -> None:
    if child.proc.poll() is None:
        child.proc.kill()
    child.proc.wait(30)
    for f in (child.proc.stdin, child.proc.stdout, child.proc.stderr):
        if f is not None:
            f.close()


def seq_of(frame: dict) -> int:
    return struct.unpack("<Q", frame["seq"]["data"])[0]


def test_selectors_fd_wakes_on_publish_from_another_process(name: str) -> None:
    prod = start_producer(name)
    try:
        prod.wait_for("ready")
        client = shmx.connect(name, timeout=10)
        try:
            fd = client.fileno()
            sel = selectors.DefaultSelector()
            sel.register(fd, selectors.EVENT_READ)
            assert sel.select(0.05) == []  # nothing published: not readable
            seen = []
            for k in range(5):
                say(prod, f"pub {k} {k + 1}")
                assert sel.select(10), "fd not readable after a publish"
                assert client.arm() is True  # a frame is there: read now
                frame = client.read_next()
                assert frame is not None and seq_of(frame) == k
                seen.append(seq_of(frame))
                assert client.read_next() is None
                assert client.arm() is False  # drained and armed
                assert sel.select(0.01) == []
            assert seen == list(range(5))
            sel.close()
        finally:
            client.close()
        say(prod, "destroy")
        prod.wait_for("destroyed")
    finally:
        stop(prod)


def test_publishes_coalesce_and_unarmed_readers_get_nothing(name: str) -> None:
    """One wake record per arm however many frames follow; none at all for a
    reader that has not armed since its last wake."""
    prod = start_producer(name)
    try:
        prod.wait_for("ready")
        client = shmx.connect(name, timeout=10)
        try:
            fd = client.fileno()  # armed
            say(prod, "pub 0 200")
            prod.wait_for("done")
            assert records(fd) == 1  # 200 publishes, one system call for us
            # Not armed again: the producer sends nothing more.
            say(prod, "pub 200 300")
            prod.lines.clear()
            prod.wait_for("done")
            assert records(fd) == 0
            assert client.arm() is True  # frames are there
            frame = client.get_latest_frame()
            assert seq_of(frame) == 299
            assert client.arm() is False
            say(prod, "pub 300 301")
            prod.lines.clear()
            prod.wait_for("done")
            assert records(fd) == 1
        finally:
            client.close()
    finally:
        stop(prod)
        request_leftovers_cleanup(name)


def request_leftovers_cleanup(name: str) -> None:
    path = os.path.join(os.environ.get("SHMX_DIR") or "/dev/shm", name)
    if os.path.exists(path):
        os.unlink(path)


def abstract_names() -> str:
    with open("/proc/net/unix") as f:
        return f.read()


@pytest.mark.parametrize("who", ["producer", "consumer"])
def test_kill9_leaves_nothing_and_wakes_the_reader(name: str, request: pytest.FixtureRequest,
                                                   who: str) -> None:
    request.node.allow_leftovers = True  # a kill -9'd producer leaves its region (reclaimed later)
    shm = os.environ.get("SHMX_DIR") or "/dev/shm"
    before = set(os.listdir(shm))
    if who == "producer":
        prod = start_producer(name)
        try:
            session = int(prod.wait_for("ready").split()[1])
            client = shmx.connect(name, timeout=10)
            fd = client.fileno()
            sel = selectors.DefaultSelector()
            sel.register(fd, selectors.EVENT_READ)
            tag = f"@shmx-wake.{session:016x}"
            assert tag in abstract_names()
            os.kill(prod.pid, signal.SIGKILL)
            prod.proc.wait(30)
            assert sel.select(10), "the reader's fd did not turn readable when its server died"
            assert client.arm() is True
            assert client.wait_frame(timeout=0) is None
            sel.close()
            client.close()
            assert tag not in abstract_names()
        finally:
            stop(prod)
    else:
        srv = shmx.Server()
        assert srv.create(name, streams=SPEC)
        try:
            child = Child("""
                import sys, shmx
                c = shmx.connect(sys.argv[1], timeout=10)
                c.fileno(); c.arm()
                print("armed", flush=True)
                import time; time.sleep(60)
            """, name)
            child.wait_for("armed")
            ctl = srv.control_fileno()
            os.kill(child.pid, signal.SIGKILL)
            child.proc.wait(30)
            srv.publish_stream(1, b"\0" * 8)  # to a dead reader: no crash, no hang
            srv.reap_stale_readers(time.monotonic_ns(), 10**12)
            srv.arm_control()
            assert isinstance(ctl, int)
        finally:
            srv.destroy()
    after = set(os.listdir(shm)) - before
    assert after <= {name}, f"files left behind: {after}"
    request_leftovers_cleanup(name)


def test_wake_channel_admits_only_region_openers(name: str) -> None:
    """A process that connects to the abstract socket with a forged hello
    (wrong reader id, or a real reader's id from another pid) is dropped;
    a real client's fd is not disturbed."""
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC, reader_slots=4)
    child = Child("""
        import sys, shmx
        import selectors
        c = shmx.connect(sys.argv[1], timeout=10)
        sel = selectors.DefaultSelector()
        sel.register(c.fileno(), selectors.EVENT_READ)
        print("id", c.reader_id, flush=True)
        if sel.select(30) and c.arm():
            print("woke", int.from_bytes(c.get_latest_frame()["seq"]["data"], "little"), flush=True)
        import time; time.sleep(60)
    """, name)
    try:
        real_id = int(child.wait_for("id").split()[1])
        session = srv.get_header_info()["session_id"]
        ctl = srv.control_fileno()
        forged = []
        for reader_id in (12345, real_id):  # unknown id; the real id but not its pid
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(b"\0" + f"shmx-wake.{session:016x}".encode())
            s.send(struct.pack("<IIQ", 0x4B575853, 0, reader_id))
            forged.append(s)
        sel = selectors.DefaultSelector()
        sel.register(ctl, selectors.EVENT_READ)
        assert sel.select(10)  # connections pending
        srv.arm_control()  # accepts and judges them
        for s in forged:
            s.settimeout(10)
            assert s.recv(16) == b"", "a forged hello was kept"
            s.close()
        # A stranger cannot write into the real client's connected socket,
        # and the forged reader id did not evict the real client's channel.
        srv.publish_stream(1, (99).to_bytes(8, "little"))
        assert child.wait_for("woke") == "woke 99"
        sel.close()
    finally:
        stop(child)
        srv.destroy()


def test_asyncio_await_frame_uses_no_thread_and_cancels_cleanly(name: str) -> None:
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    client = shmx.Client()
    assert client.open(name)
    threads_before = threading.active_count()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # 50 waits cancelled or timed out: no thread, no executor, no reader left.
        for _ in range(25):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.await_frame(), 0.001)
            assert await client.await_frame(timeout=0.001) is None
        assert getattr(loop, "_default_executor", None) is None
        assert threading.active_count() == threads_before
        fd = client.fileno()
        assert fd not in getattr(loop, "_selector").get_map()  # reader removed

        async def publish_later() -> None:
            await asyncio.sleep(0.02)
            srv.publish_stream(1, (7).to_bytes(8, "little"))

        task = asyncio.ensure_future(publish_later())
        frame = await client.await_frame(timeout=10)
        assert frame is not None and seq_of(frame) == 7
        await task
        got = []

        async def consume() -> None:
            async for f in client.aframes(timeout=10):
                got.append(seq_of(f))
                if len(got) == 3:
                    break

        consumer = asyncio.ensure_future(consume())
        for i in range(8, 11):
            await asyncio.sleep(0.02)
            srv.publish_stream(1, i.to_bytes(8, "little"))
        await asyncio.wait_for(consumer, 10)
        assert got == [8, 9, 10]

    try:
        asyncio.run(main())
    finally:
        client.close()
        srv.destroy()


def test_asyncio_close_from_another_task_ends_await_frame(name: str) -> None:
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    client = shmx.Client()
    assert client.open(name)

    async def main() -> None:
        waiter = asyncio.ensure_future(client.await_frame())
        await asyncio.sleep(0.02)
        client.close()
        assert await asyncio.wait_for(waiter, 10) is None

    try:
        asyncio.run(main())
    finally:
        client.close()
        srv.destroy()


def test_await_control_from_a_client_process(name: str) -> None:
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    child = Child("""
        import sys, time, shmx
        c = shmx.connect(sys.argv[1], timeout=10)
        for line in sys.stdin if False else []:
            pass
        print("open", flush=True)
        time.sleep(0.2)
        for i in range(3):
            assert c.send_control(7, b"msg%d" % i)
            time.sleep(0.05)
        print("sent", flush=True)
        time.sleep(30)
    """, name)

    async def main() -> list:
        got: list = []
        while len(got) < 3:
            msgs = await srv.await_control(timeout=20)
            assert msgs, srv.last_error
            got += [m["data"] for m in msgs]
        return got

    try:
        child.wait_for("open")
        assert asyncio.run(main()) == [b"msg0", b"msg1", b"msg2"]
        assert asyncio.run(srv.await_control(timeout=0.01)) == []
    finally:
        stop(child)
        srv.destroy()


def test_trio_and_anyio_wait_on_the_fd(name: str) -> None:
    trio = pytest.importorskip("trio", reason="trio is not installed (pip install trio)")
    anyio = pytest.importorskip("anyio", reason="anyio is not installed (pip install anyio)")
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    client = shmx.Client()
    assert client.open(name)
    fd = client.fileno()

    async def with_trio() -> int:
        async def later() -> None:
            await trio.sleep(0.02)
            srv.publish_stream(1, (41).to_bytes(8, "little"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            while not client.arm():
                await trio.lowlevel.wait_readable(fd)
        return seq_of(client.get_latest_frame())

    async def with_anyio() -> int:
        async def later() -> None:
            await anyio.sleep(0.02)
            srv.publish_stream(1, (42).to_bytes(8, "little"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            while not client.arm():
                await anyio.wait_readable(fd)
        return seq_of(client.get_latest_frame())

    try:
        assert trio.run(with_trio) == 41
        assert anyio.run(with_anyio) == 42
    finally:
        client.close()
        srv.destroy()


def test_fd_calls_on_closed_objects_and_legacy_refusals(name: str) -> None:
    client = shmx.Client()
    with pytest.raises(shmx.ShmxError):
        client.fileno()
    assert client.arm() is True and "not open" in client.last_error
    srv = shmx.Server()
    with pytest.raises(shmx.ServerGoneError):
        srv.control_fileno()
    assert srv.create(name, streams=SPEC)
    c = shmx.Client()
    assert c.open(name)
    fd = c.fileno()
    srv.destroy()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    assert sel.select(10)  # destroy made it readable
    sel.close()
    assert c.arm() is True
    c.close()
