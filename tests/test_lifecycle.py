"""Lifecycle of a region with real processes: liveness (kill -9 included),
create over a live or a dead owner, destroy, exit without destroy, clients
that outlive their server and follow its successor, reaping of dead
readers, a full shared-memory file system, another directory than /dev/shm.
"""
from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import shmx
from _helpers import Child

ROOT = Path(__file__).resolve().parent.parent
SHM_DIR = os.environ.get("SHMX_DIR") or "/dev/shm"
U8 = [shmx.create_stream_spec(1, "bytes", shmx.DT_U8, 1, 1)]


PRODUCER = """
    import os, shmx, time
    name, mode = sys.argv[1], sys.argv[2]
    s = shmx.Server()
    assert s.create(name, slots=3, frame_bytes_cap=256,
                    streams=[shmx.create_stream_spec(1, "bytes", shmx.DT_U8, 1, 1)]), s.last_error
    s.publish({1: b"first frame"}, 1.0)
    print("ready", s.get_header_info()["session_id"], flush=True)
    if mode == "exit":        # leave without destroy(), without any cleanup
        os._exit(0)
    time.sleep(120)
"""


def remove(name: str, shm_dir: str = SHM_DIR) -> None:
    try:
        os.unlink(os.path.join(shm_dir, name))
    except FileNotFoundError:
        pass


def header(name: str, shm_dir: Optional[str] = None) -> Dict:
    insp = shmx.Inspector()
    assert insp.open(name, shm_dir=shm_dir), insp.last_error
    try:
        return insp.get_header_info()
    finally:
        insp.close()


# ------------------------------------------------------------------ liveness

def test_server_liveness_seen_by_anyone_kill9_included(name):
    prod = Child(PRODUCER, name, "sleep")
    client = shmx.Client()
    try:
        prod.line()
        assert client.open(name), client.last_error
        assert client.server_alive() is True
        h = header(name)
        assert h["owner_alive"] is True and h["owner_pid"] == prod.pid and h["closed"] is False
        frame = client.get_latest_frame()
        view = frame["bytes"]["data"]
        prod.kill9()
        # The lock died with the process: every observer knows at once.
        assert client.server_alive() is False
        h = header(name)
        assert h["owner_alive"] is False and h["closed"] is False and h["owner_pid"] == prod.pid
        # The mapping stays valid, the last frame stays readable.
        assert bytes(view) == b"first frame"
        assert client.wait_frame(0.3) is None
        assert "gone" in client.last_error
    finally:
        client.close()
        prod.close()
        remove(name)


def test_create_over_live_owner_fails_naming_its_pid(name):
    prod = Child(PRODUCER, name, "sleep")
    try:
        prod.line()
        s = shmx.Server()
        assert s.create(name, streams=U8) is False
        assert f"pid {prod.pid}" in s.last_error and "alive" in s.last_error
        with pytest.raises(shmx.RegionExistsError) as err:
            shmx.serve(name, U8)
        assert str(prod.pid) in str(err.value)
        assert isinstance(err.value, FileExistsError)
        # The live region is untouched.
        assert header(name)["owner_pid"] == prod.pid
    finally:
        prod.close()
        remove(name)


@pytest.mark.parametrize("how", ["kill9", "exit-without-destroy"])
def test_create_reclaims_region_of_dead_owner(name, how):
    prod = Child(PRODUCER, name, "exit" if how != "kill9" else "sleep")
    try:
        old_session = int(prod.line().split()[1])
        if how == "kill9":
            prod.kill9()
        else:
            assert prod.proc.wait(timeout=20) == 0
        assert os.path.exists(os.path.join(SHM_DIR, name)), "the dead owner's region should remain"
        assert header(name)["owner_alive"] is False
        with shmx.serve(name, U8, frame_bytes_cap=64) as s:
            h = s.get_header_info()
            assert h["session_id"] != old_session and h["owner_pid"] == os.getpid()
            assert header(name)["owner_alive"] is True
            s.publish({1: b"new"}, 2.0)
            with shmx.connect(name) as c:
                assert bytes(c.get_latest_frame()["bytes"]["data"]) == b"new"
        assert not os.path.exists(os.path.join(SHM_DIR, name))
    finally:
        prod.close()
        remove(name)


def test_destroy_unlinks_and_client_keeps_valid_mapping(name):
    s = shmx.serve(name, U8, frame_bytes_cap=64)
    c = shmx.connect(name)
    try:
        s.publish({1: b"last words"}, 3.0)
        frame = c.get_latest_frame()
        view = frame["bytes"]["data"]
        s.destroy()
        assert not os.path.exists(os.path.join(SHM_DIR, name))
        assert c.server_alive() is False
        assert c.get_header_info()["closed"] is True
        assert bytes(view) == b"last words"  # no SIGBUS, same bytes
        again = c.get_latest_frame()
        assert again is not None and bytes(again["bytes"]["data"]) == b"last words"
        assert c.wait_frame(0.5) is None  # no new server took the name
        assert "gone" in c.last_error and name in c.last_error, c.last_error
    finally:
        c.close()
        s.destroy()


def test_client_follows_new_server_with_new_schema(name):
    prod = Child(PRODUCER, name, "sleep")
    c = shmx.Client()
    try:
        old_session = int(prod.line().split()[1])
        assert c.open(name), c.last_error
        first = c.get_latest_frame()
        old_view = first["bytes"]["data"]
        assert c.session_id == old_session
        prod.kill9()
        assert c.server_alive() is False
        schema = [shmx.create_stream_spec(5, "temperature", shmx.DT_F64, 1, 8),
                  shmx.create_stream_spec(6, "label", shmx.DT_U8, 1, 1)]
        with shmx.serve(name, schema, frame_bytes_cap=128) as s:
            s.publish({5: struct.pack("<d", 21.5), 6: b"lab"}, 7.0)
            # wait_frame notices the old server is dead, finds the new one
            # under the same name and reconnects by itself.
            frame = c.wait_frame(10.0)
            assert frame is not None, c.last_error
            assert set(frame) == {"__metadata__", "temperature", "label"}
            assert bytes(frame["label"]["data"]) == b"lab"
            assert c.session_id == s.get_header_info()["session_id"] != old_session
            assert [x["name"] for x in c.get_streams_info()] == ["temperature", "label"]
            assert c.server_alive() is True
            # A view of the dead server's last frame is still readable.
            assert bytes(old_view) == b"first frame"
            c.close()
    finally:
        c.close()
        prod.close()
        remove(name)


def test_explicit_reconnect_after_destroy(name):
    with shmx.serve(name, U8, frame_bytes_cap=64) as s1:
        s1.publish({1: b"one"}, 1.0)
        c = shmx.connect(name)
        assert c.get_latest_frame() is not None
        first_session = c.session_id
    try:
        assert c.server_alive() is False
        assert c.reconnect() is False  # nobody holds the name: the old connection is kept
        assert c.is_open()
        with shmx.serve(name, [shmx.create_stream_spec(9, "other", shmx.DT_U16, 1, 2)],
                        frame_bytes_cap=64) as s2:
            s2.publish({9: b"\x01\x00\x02\x00"}, 2.0)
            assert c.reconnect(), c.last_error
            assert c.session_id != first_session and c.server_alive() is True
            frame = c.get_latest_frame()
            assert frame["other"]["elem_count"] == 2
            c.close()
    finally:
        c.close()


# ------------------------------------------------------------------- readers

READER = """
    import shmx, time
    c = shmx.Client()
    assert c.open(sys.argv[1]), c.last_error
    f = c.get_latest_frame()
    print("pinned", c.reader_id, f["__metadata__"]["frame_id"] if f else 0, flush=True)
    time.sleep(120)
"""


def test_reader_liveness_and_automatic_reaping(name):
    s = shmx.serve(name, U8, slots=3, reader_slots=4, frame_bytes_cap=64)
    s.publish({1: b"x"}, 0.0)
    live, dead = Child(READER, name), Child(READER, name)
    try:
        live_id, dead_id = int(live.line().split()[1]), int(dead.line().split()[1])
        by_id = {r["reader_id"]: r for r in s.snapshot_readers() if r["in_use"]}
        assert by_id[live_id]["alive"] is True and by_id[live_id]["pid"] == live.pid
        assert by_id[dead_id]["alive"] is True and by_id[dead_id]["pid"] == dead.pid
        dead.kill9()
        # Any process can see it: here an Inspector.
        insp = shmx.Inspector()
        assert insp.open(name)
        seen = {r["reader_id"]: r for r in insp.get_readers_info() if r["in_use"]}
        insp.close()
        assert seen[dead_id]["alive"] is False and seen[live_id]["alive"] is True
        assert s.get_header_info()["readers_connected"] == 2
        # The producer reaps it on its own while it publishes.
        deadline = time.monotonic() + 10
        i = 0
        while time.monotonic() < deadline:
            i += 1
            s.publish({1: bytes([i % 256])}, float(i))
            ids = {r["reader_id"] for r in s.snapshot_readers() if r["in_use"]}
            if dead_id not in ids:
                break
            time.sleep(0.002)
        assert dead_id not in ids, "the dead reader was never reaped"
        assert live_id in ids
        assert s.get_header_info()["readers_connected"] == 1
    finally:
        live.close()
        dead.close()
        s.destroy()


# ------------------------------------------------------- where regions live

def test_shm_dir_option_and_env(name, tmp_path):
    d = str(tmp_path)
    with shmx.serve(name, U8, frame_bytes_cap=64, shm_dir=d) as s:
        assert os.path.exists(os.path.join(d, name))
        assert not os.path.exists(os.path.join(SHM_DIR, name))
        s.publish({1: b"elsewhere"}, 1.0)
        with shmx.connect(name, shm_dir=d) as c:
            assert bytes(c.get_latest_frame()["bytes"]["data"]) == b"elsewhere"
        assert shmx.Client().open(name) is False  # not in the default directory
        # SHMX_DIR points a process without shm_dir= at the same place.
        env = dict(os.environ, SHMX_DIR=d)
        child = Child("""
            import shmx
            c = shmx.connect(sys.argv[1])
            print(bytes(c.get_latest_frame()["bytes"]["data"]).decode(), c.server_alive(), flush=True)
            c.close()
        """, name, env=env)
        try:
            assert child.line() == "elsewhere True"
        finally:
            child.close()
    assert os.listdir(d) == []


def _mount_small_tmpfs(path: str) -> str:
    """Mount a 2 MiB tmpfs on path; '' on success, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=1777", "tmpfs", path],
                       capture_output=True, text=True)
    return "" if r.returncode == 0 else f"mount -t tmpfs failed: {r.stderr.strip()}"


FULL_CHILD = """
    import os, shmx
    d, name = sys.argv[1], sys.argv[2]
    small = shmx.Server()
    assert small.create(name + "-small", frame_bytes_cap=64 * 1024, shm_dir=d,
                        streams=[shmx.create_stream_spec(1, "b", shmx.DT_U8, 1, 1)]), small.last_error
    big = shmx.Server()
    ok = big.create(name, slots=3, frame_bytes_cap=4 << 20, shm_dir=d,
                    streams=[shmx.create_stream_spec(1, "b", shmx.DT_U8, 1, 1)])
    print("big", ok, flush=True)
    print("error", big.last_error, flush=True)
    try:
        shmx.serve(name, [shmx.create_stream_spec(1, "b", shmx.DT_U8, 1, 1)], frame_bytes_cap=4 << 20, shm_dir=d)
        print("raised none", flush=True)
    except shmx.ShmxError as e:
        print("raised", type(e).__name__, isinstance(e, MemoryError), flush=True)
    print("files", sorted(os.listdir(d)), flush=True)
    small.publish({1: b"still fine"}, 1.0)
    c = shmx.connect(name + "-small", shm_dir=d)
    print("small", bytes(c.get_latest_frame()["b"]["data"]).decode(), flush=True)
    c.close()
    small.destroy()
    print("after", sorted(os.listdir(d)), flush=True)
"""


def test_full_shm_filesystem_fails_at_create(name, tmp_path):
    mnt = str(tmp_path / "smalltmpfs")
    os.mkdir(mnt)
    why = _mount_small_tmpfs(mnt)
    mounted = not why
    cmd_prefix: List[str] = []
    if not mounted:
        # Not allowed to mount here: try a private mount namespace.
        probe = subprocess.run(["unshare", "-m", "sh", "-c",
                                f"mount -t tmpfs -o size=2m tmpfs {mnt} && umount {mnt}"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot make a small tmpfs: {why}; unshare -m: {probe.stderr.strip()}")
        cmd_prefix = ["unshare", "-m", "sh", "-c",
                      f'mount -t tmpfs -o size=2m tmpfs {mnt} && exec "$0" "$@"']
    try:
        prog = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(FULL_CHILD)
        out = subprocess.run(cmd_prefix + [sys.executable, "-c", prog, mnt, name],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
        assert lines["big"] == "False"
        err = lines["error"]
        assert "No space left" in err and "reserve" in err and name in err, err
        assert lines["raised"] == "NoSpaceError True"
        # Nothing half-made is left behind; the region that fits still works.
        assert lines["files"] == repr([name + "-small"])
        assert lines["small"] == "still fine"
        assert lines["after"] == "[]"
    finally:
        if mounted:
            subprocess.run(["umount", mnt], check=False)


def test_region_is_fully_reserved_up_front(name, tmp_path):
    # posix_fallocate: the file's blocks exist before any frame is written,
    # so a later write can never hit a full file system (SIGBUS).
    with shmx.serve(name, U8, slots=2, frame_bytes_cap=1 << 20, shm_dir=str(tmp_path)) as s:
        st = os.stat(tmp_path / name)
        assert st.st_blocks * 512 >= s.get_header_info()["total_bytes"]
        assert stat.S_IMODE(st.st_mode) == 0o600


def test_create_removes_temporaries_of_dead_creators(name, tmp_path):
    # A creator killed between making its (fully reserved) temporary file and
    # naming it leaves "<name>~shmx-new-<pid>-<hex>"; the next create of that
    # name frees it.  A live creator holds the file's liveness lock from the
    # moment it made it, and that lock, not the pid in the name (which lies
    # across pid namespaces, and about zombies), is what keeps it.
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead_tmp = tmp_path / f"{name}~shmx-new-{gone.pid}-0badf00d"
    live_tmp = tmp_path / f"{name}~shmx-new-{gone.pid}-12345678"
    other_tmp = tmp_path / f"{name}x~shmx-new-{gone.pid}-0badf00d"
    for f in (dead_tmp, live_tmp, other_tmp):
        f.write_bytes(b"\0" * 4096)
    import fcntl
    holder = open(live_tmp, "r+b")
    # The lock byte of the server's liveness lock (platform_posix.c).
    fcntl.lockf(holder, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 1 << 40)
    with shmx.serve(name, U8, frame_bytes_cap=64, shm_dir=str(tmp_path)):
        assert not dead_tmp.exists()
        assert live_tmp.exists() and other_tmp.exists()
    holder.close()
    live_tmp.unlink()
    other_tmp.unlink()
    assert os.listdir(tmp_path) == []
