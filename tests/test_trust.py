"""Trust nothing: no party that shares a region can crash, corrupt or wedge
another.  Hostile writes into the region, truncation under live processes,
processes killed at every step of a reader slot's life, fork().

The tests read and write the region's bytes by offset on purpose: they play
the hostile peer (the wire format is in docs/design.md).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import shmx
from _helpers import ROOT, Child, wait_until

U8 = [shmx.create_stream_spec(1, "b", shmx.DT_U8, 1, 1)]
# GlobalHeader offsets (layout v2.0)
STATIC_OFFSET, STATIC_CAP, STATIC_USED = 48, 52, 56
SLOTS_OFFSET, SLOT_STRIDE, FRAME_SEQ = 68, 64, 104
READERS_OFFSET, CONTROL_OFFSET, READERS_CONNECTED = 84, 88, 116


def region_path(name: str, shm_dir: str = "") -> Path:
    return Path(shm_dir or os.environ.get("SHMX_DIR") or "/dev/shm") / name


def header(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(128)


def poke(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def u32(hdr: bytes, off: int) -> int:
    return struct.unpack_from("<I", hdr, off)[0]


# ------------------------------------------------------ the producer's own truth

def test_forged_static_bytes_used_cannot_aim_write_static(name):
    """A hostile static_bytes_used used to send write_static_append's copy
    into reader slot 0's control ring (or past the mapping)."""
    with shmx.serve(name, U8, static_bytes_cap=256, frame_bytes_cap=64) as server:
        path = region_path(name)
        hdr = header(path)
        static_off, cap = u32(hdr, STATIC_OFFSET), u32(hdr, STATIC_CAP)
        readers_off, control_off = u32(hdr, READERS_OFFSET), u32(hdr, CONTROL_OFFSET)
        with open(path, "rb") as f:
            f.seek(readers_off)
            before = f.read(control_off - readers_off + 256)
        for forged in (cap - 1, cap, 2 ** 31, 2 ** 32 - 1):
            poke(path, STATIC_USED, struct.pack("<I", forged))
            assert server.write_static_append(b"Z" * 16) is True, server.last_error
        with open(path, "rb") as f:
            f.seek(readers_off)
            assert f.read(len(before)) == before  # nothing written outside the static area
        used = u32(header(path), STATIC_USED)
        with open(path, "rb") as f:
            f.seek(static_off)
            static = f.read(used)
        assert static.endswith(b"Z" * 64)  # the four appends, where they belong
        # The schema survived; the producer still publishes what it was given.
        assert [s["name"] for s in server.get_streams_info()] == ["b"]
        with shmx.connect(name) as client:
            assert server.publish_stream(1, b"ok") is None
            assert bytes(client.get_latest_frame()["b"]["data"]) == b"ok"


def test_forged_directory_entry_cannot_overflow_the_schema(name):
    """A directory TLV with a huge length made the re-parse stop early and
    the next write_static overflow a heap buffer."""
    specs = [shmx.create_stream_spec(i, f"s{i}", shmx.DT_U8, 1, 1) for i in range(1, 9)]
    with shmx.serve(name, specs, static_bytes_cap=4096, frame_bytes_cap=64) as server:
        path = region_path(name)
        static_off = u32(header(path), STATIC_OFFSET)
        poke(path, static_off, struct.pack("<II", 0x1000, 0xFFFFFFF0))  # first entry: huge length
        for _ in range(4):
            assert server.write_static_append(b"\x00" * 32) is True, server.last_error
        assert len(server.get_streams_info()) == 8
        for i in range(1, 9):
            assert server.publish_stream(i, bytes([i])) is None
        # The region's directory is rewritten from the producer's copy: a
        # reader that opens now gets the true schema back.
        with shmx.connect(name) as client:
            assert [s["id"] for s in client.get_streams_info()] == list(range(1, 9))


def test_forged_slot_headers_do_not_mislead_the_producer(name):
    """The producer keeps each slot's seq and frame id itself: forged ones
    neither stop it nor make it overwrite a pinned frame."""
    with shmx.serve(name, U8, slots=3, frame_bytes_cap=64) as server, shmx.connect(name) as client:
        path = region_path(name)
        hdr = header(path)
        slots_off, stride = u32(hdr, SLOTS_OFFSET), u32(hdr, SLOT_STRIDE)
        server.publish_stream(1, b"held")
        held = client.get_latest_frame()
        view = held["b"]["data"]
        for k in range(3):  # forge every slot: odd seq, frame id 2**64-1
            poke(path, slots_off + k * stride + 8, struct.pack("<Q", 2 ** 64 - 1))
            poke(path, slots_off + k * stride + 40, struct.pack("<Q", 2 ** 64 - 3))
        for i in range(20):
            assert server.publish_stream(1, bytes([i]) * 4) is None, server.last_error
        assert bytes(view) == b"held"  # the pin held: never rewritten
        frame = client.get_latest_frame()
        assert frame["__metadata__"]["frame_id"] == 21 and bytes(frame["b"]["data"]) == bytes([19]) * 4


def test_forged_frame_ids_never_go_backwards(name):
    with shmx.serve(name, U8, slots=4, frame_bytes_cap=64) as server, shmx.connect(name) as client:
        path = region_path(name)
        hdr = header(path)
        slots_off, stride = u32(hdr, SLOTS_OFFSET), u32(hdr, SLOT_STRIDE)
        for i in range(3):
            server.publish_stream(1, bytes([i]))
        poke(path, slots_off + 1 * stride + 8, struct.pack("<Q", 2 ** 64 - 1))  # a forged id
        ids = []
        for i in range(3, 12):
            server.publish_stream(1, bytes([i]))
            f = client.read_next()
            ids.append(f["__metadata__"]["frame_id"] if f else None)
        got = [i for i in ids if i is not None]
        assert got and 2 ** 64 - 1 not in got
        assert got == sorted(got)
        assert client.get_latest_frame()["__metadata__"]["frame_id"] == 12


def test_forged_frame_seq_does_not_blind_a_waiter(name):
    with shmx.serve(name, U8, frame_bytes_cap=64) as server, shmx.connect(name) as client:
        server.publish_stream(1, b"a")
        assert client.get_latest_frame() is not None
        poke(region_path(name), FRAME_SEQ, struct.pack("<Q", 2 ** 64 - 1))
        client.get_latest_frame()  # sees the forged count
        server.publish_stream(1, b"b")  # stores the true one again
        frame = client.wait_frame(5.0)
        assert frame is not None and bytes(frame["b"]["data"]) == b"b"


def test_elem_count_inconsistent_with_bytes_is_refused(name):
    spec = [shmx.create_stream_spec(1, "v", shmx.DT_F32, 3, 12)]
    with shmx.serve(name, spec, slots=2, frame_bytes_cap=256) as server, shmx.connect(name) as client:
        server.publish_stream(1, struct.pack("<6f", *range(6)))
        path = region_path(name)
        hdr = header(path)
        slots_off, stride = u32(hdr, SLOTS_OFFSET), u32(hdr, SLOT_STRIDE)
        # Slot 0's first stream TLV: {type, length} then {id, elem_count, bytes, 0}.
        poke(path, slots_off + 0 * stride + 64 + 8 + 4, struct.pack("<I", 7))
        assert client.get_latest_frame() is None
        assert "elem_count" in client.last_error
        server.publish_stream(1, struct.pack("<3f", 1, 2, 3))
        frame = client.get_latest_frame()
        assert frame["v"]["elem_count"] == 1


def test_shm_dir_with_nul_is_refused(name, tmp_path):
    server = shmx.Server()
    assert server.create(name, streams=U8, shm_dir=str(tmp_path) + "\0x") is False
    assert "NUL" in server.last_error
    client = shmx.Client()
    assert client.open(name, shm_dir=str(tmp_path) + "\0x") is False
    assert "NUL" in client.last_error
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ truncation

TRUNC_PRODUCER = """
    import shmx, sys, time
    name = sys.argv[1]
    s = shmx.serve(name, [shmx.create_stream_spec(1, "b", shmx.DT_U8, 1, 1)], slots=4,
                   frame_bytes_cap=1 << 16)
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        try:
            s.publish_stream(1, bytes([i % 251]) * 4096)
        except shmx.ShmxError as exc:
            print("refused", type(exc).__name__, exc, flush=True)
            break
        time.sleep(0.001)
    s.destroy()
    print("destroyed", flush=True)
"""

TRUNC_READER = """
    import shmx, sys, time
    c = shmx.connect(sys.argv[1], timeout=10)
    f = c.wait_frame(10)
    view = f["b"]["data"]
    print("reading", flush=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if c.get_latest_frame() is None and "truncated" in c.last_error:
            break
        time.sleep(0.001)
    print("reader", c.last_error, flush=True)
    print("view", sum(bytes(view)), flush=True)   # zeros, not SIGBUS
    w = c.wait_frame(1.0)
    print("wait", w is None, c.last_error, flush=True)
    c.close()
    print("closed", flush=True)
"""


@pytest.mark.parametrize("keep", ["zero", "half"])
def test_truncation_under_live_processes_is_survived(name, keep):
    producer = Child(TRUNC_PRODUCER, name)
    reader = None
    try:
        producer.wait_for("ready")
        reader = Child(TRUNC_READER, name)
        reader.wait_for("reading")
        path = region_path(name)
        size = path.stat().st_size
        os.truncate(path, 0 if keep == "zero" else size // 2)
        assert producer.wait_for("refused").count("truncated") == 1
        assert producer.wait_for("destroyed")
        assert "truncated" in reader.wait_for("reader")
        assert reader.wait_for("view") == "view 0" or keep == "half"
        assert reader.wait_for("wait ").startswith("wait True")
        reader.wait_for("closed")
        assert reader.proc.wait(20) == 0 and producer.proc.wait(20) == 0
    finally:
        producer.close()
        if reader:
            reader.close()
    assert not region_path(name).exists()


def test_truncated_region_is_listed_and_inspected(name):
    """`shmx ls` and `shmx inspect` of a truncated live region: a clear
    report, never SIGBUS."""
    producer = Child(TRUNC_PRODUCER, name)
    try:
        producer.wait_for("ready")
        path = region_path(name)
        os.truncate(path, 4096)  # the header survives, the slots do not
        for args in (["ls"], ["inspect", name]):
            r = subprocess.run([sys.executable, "-m", "shmx", *args], capture_output=True,
                               text=True, timeout=60, cwd=ROOT)
            assert r.returncode in (0, 1), (args, r.returncode, r.stderr)
            assert "Traceback" not in r.stderr
        producer.wait_for("refused")
    finally:
        producer.close()
    if region_path(name).exists():
        region_path(name).unlink()


def test_fault_handler_can_be_turned_off():
    code = ("import shmx, shmx._shmx as m; m.lib.shmx_set_fault_handler(0); "
            "print(m.lib.shmx_set_fault_handler(1), m.lib.shmx_set_fault_handler(1))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.stdout.split() == ["0", "1"], r.stderr


# ------------------------------------------- reader slots: every state recovers

KILL_CLIENT = """
    import shmx, sys
    c = shmx.Client()
    ok = c.open(sys.argv[1])
    print("opened", ok, c.last_error, flush=True)
    c.close()
    print("closed", flush=True)
"""

ATTACH_POINTS = ["attach:locked", "attach:claimed", "attach:filled", "attach:attached"]
DETACH_POINTS = ["detach:locked", "free:claimed", "free:cleared", "free:uncounted"]


def _killed_at(name: str, point: str) -> None:
    env = dict(os.environ, SHMX_TEST_KILL_AT=point)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(KILL_CLIENT), name], env=env,
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stdout, r.stderr)


@pytest.mark.parametrize("point", ATTACH_POINTS + DETACH_POINTS)
def test_reader_killed_at_each_step_leaves_a_recoverable_slot(name, point):
    # One reader slot: a leaked slot makes the next open fail.
    with shmx.serve(name, U8, reader_slots=1, slots=2, frame_bytes_cap=64) as server:
        server.publish_stream(1, b"x")
        _killed_at(name, point)
        connected = server.get_header_info()["readers_connected"]
        assert connected in (0, 1)  # never wrapped below zero
        # The next attacher frees the slot whatever state the dead one left.
        with shmx.connect(name) as client:
            assert client.get_latest_frame() is not None
            assert server.get_header_info()["readers_connected"] == 1
            rows = [r for r in server.snapshot_readers() if r["in_use"]]
            assert len(rows) == 1 and rows[0]["pid"] == os.getpid() and not rows[0]["legacy"]
        assert server.get_header_info()["readers_connected"] == 0
        # And its pin went with it: the producer can use both slots.
        for i in range(4):
            assert server.publish_stream(1, bytes([i])) is None


@pytest.mark.parametrize("point", ["reclaim:locked", "free:claimed", "free:cleared", "free:uncounted"])
def test_reaper_killed_mid_reap_leaves_a_recoverable_slot(name, point):
    with shmx.serve(name, U8, reader_slots=1, slots=2, frame_bytes_cap=64) as server:
        server.publish_stream(1, b"x")
        dead = Child("import shmx, sys\nc = shmx.connect(sys.argv[1])\nc.get_latest_frame()\n"
                     "print('in', flush=True)\nimport time\ntime.sleep(60)\n", name)
        dead.wait_for("in")
        dead.kill9()
        dead.close()
        # A second reader reclaims the dead one's slot and is killed mid-way.
        _killed_at(name, point)
        assert server.get_header_info()["readers_connected"] in (0, 1)
        assert server.reap_stale_readers(time.monotonic_ns(), 10 ** 12) in (0, 1)
        with shmx.connect(name) as client:
            assert client.get_latest_frame() is not None
        assert server.get_header_info()["readers_connected"] == 0


# ------------------------------------------------------------------------ fork

def test_fork_child_cannot_touch_the_parents_client(name):
    with shmx.serve(name, U8, slots=2, frame_bytes_cap=64) as server, shmx.connect(name) as client:
        server.publish_stream(1, b"held")
        view = client.get_latest_frame()["b"]["data"]
        pid = os.fork()
        if pid == 0:  # the child: every use fails, nothing of the parent's changes
            code = 0
            if client.get_latest_frame() is not None or "fork" not in client.last_error:
                code |= 1
            if client.read_next() is not None:
                code |= 2
            try:
                server.publish_stream(1, b"child")
                code |= 4
            except shmx.ForkedError:
                pass
            client.close()
            server.destroy()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert region_path(name).exists()
        for i in range(10):
            assert server.publish_stream(1, bytes([i]) * 4) is None
        assert bytes(view) == b"held"  # our pin survived the child's close()
        assert client.get_latest_frame()["__metadata__"]["frame_id"] == 11


def _mp_child(client: shmx.Client, q) -> None:
    q.put((client.get_latest_frame() is None, client.last_error))


def test_multiprocessing_fork_child_gets_a_clear_error(name):
    ctx = multiprocessing.get_context("fork")
    with shmx.serve(name, U8, frame_bytes_cap=64) as server, shmx.connect(name) as client:
        server.publish_stream(1, b"x")
        assert client.get_latest_frame() is not None
        q = ctx.Queue()
        p = ctx.Process(target=_mp_child, args=(client, q))
        p.start()
        none, err = q.get(timeout=30)
        p.join(30)
        assert p.exitcode == 0
        assert none and "fork()" in err
        assert client.get_latest_frame() is not None


PRODUCER_WITH_CHILD = """
    import os, shmx, sys, time
    s = shmx.serve(sys.argv[1], [shmx.create_stream_spec(1, "b", shmx.DT_U8, 1, 1)])
    pid = os.fork()
    if pid == 0:
        time.sleep(60)   # outlives the producer
        os._exit(0)
    print("child", pid, flush=True)
    os._exit(0)          # the producer dies without destroy
"""


def test_producers_child_does_not_keep_it_alive(name):
    producer = Child(PRODUCER_WITH_CHILD, name)
    child = 0
    try:
        child = int(producer.wait_for("child").split()[1])
        assert producer.proc.wait(20) == 0
        with shmx.connect(name) as client:
            assert wait_until(lambda: client.server_alive() is False, 10)
        with shmx.serve(name, U8):  # the stale region is reclaimed
            pass
    finally:
        producer.close()
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ----------------------------------------------------------- waits and futex

FUTEX_PRELOAD = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/syscall.h>
static long calls;
long syscall(long n, ...)
{
    va_list ap;
    va_start(ap, n);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (n == SYS_futex) {
        calls++;
        errno = ENOSYS;
        return -1;
    }
    long (*real)(long, ...) = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
__attribute__((destructor)) static void report(void) { fprintf(stderr, "futex calls %ld\n", calls); }
"""


def test_failing_futex_does_not_spin(name, tmp_path):
    """A futex that fails with ENOSYS/EPERM (seccomp) used to turn a wait
    into a 100% CPU loop.  Count the futex calls of a 0.5 s wait."""
    src = tmp_path / "nofutex.c"
    src.write_text(FUTEX_PRELOAD)
    lib = tmp_path / "nofutex.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    code = ("import shmx, sys; s = shmx.serve(sys.argv[1], [shmx.create_stream_spec(1,'b',shmx.DT_U8,1,1)]); "
            "c = shmx.connect(sys.argv[1]); print(c.wait_frame(0.5)); c.close(); s.destroy()")
    r = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env=dict(os.environ, LD_PRELOAD=str(lib)))
    assert r.returncode == 0, r.stderr
    calls = int(r.stderr.rsplit("futex calls ", 1)[1].split()[0])
    assert 0 < calls < 2000, calls  # a spin makes hundreds of thousands


def test_the_os_cause_of_a_failure_is_kept(name, tmp_path):
    """errno survives as a number, not only inside the message text."""
    import errno
    from shmx._shmx import lib
    with pytest.raises(shmx.ShmxError) as info:
        shmx.serve(name, U8, shm_dir=str(tmp_path / "no-such-dir"))
    assert info.value.os_errno == errno.ENOENT
    os.chmod(tmp_path, 0o500)
    try:
        if os.geteuid() != 0:
            with pytest.raises(shmx.ShmxPermissionError) as info:
                shmx.serve(name, U8, shm_dir=str(tmp_path))
            assert info.value.os_errno == errno.EACCES == info.value.errno
    finally:
        os.chmod(tmp_path, 0o700)
    # A failure without an OS cause reports 0.
    with shmx.serve(name, U8, shm_dir=str(tmp_path)) as server:
        with pytest.raises(shmx.InvalidArgumentError) as info:
            server.publish_stream(9, b"x")
        assert info.value.os_errno == 0 and lib.shmx_last_errno() == 0
