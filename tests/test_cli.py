"""The ``shmx`` command, driven as a subprocess against real regions.

Regions live in a private directory per test (``--dir``), so listing and
``rm --stale`` never see (or remove) anything of another test; the few
checks that need ``/dev/shm`` use ``unique_name`` names.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import shmx
from _helpers import wait_until
from shmx._shmx import lib

CLI = [sys.executable, "-m", "shmx"]
TIMEOUT = 60
REPO = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: float = TIMEOUT, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, **kw)


def run_many(*argvs: Tuple[str, ...], timeout: float = TIMEOUT) -> List[subprocess.CompletedProcess]:
    """Several independent commands at once (each start costs an interpreter)."""
    procs = [subprocess.Popen([*CLI, *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in argvs]
    out = []
    for a, p in zip(argvs, procs):
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess([*CLI, *a], p.returncode, stdout, stderr))
    return out


def assert_error(r: subprocess.CompletedProcess, code: int, *words: str) -> None:
    """Exit ``code``, one line on stderr naming ``words``, no traceback."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def shm_dir(tmp_path: Path) -> str:
    d = tmp_path / "shm"
    d.mkdir()
    return str(d)


IMG_STREAMS = [
    shmx.create_stream_spec(1, "img", shmx.DT_U8, 3, 3),
    shmx.create_stream_spec(2, "width", shmx.DT_U32, 1, 4),
    shmx.create_stream_spec(3, "height", shmx.DT_U32, 1, 4),
    shmx.create_stream_spec(4, "pos", shmx.DT_F32, 3, 12, extra=b"\x01meta"),
    shmx.create_stream_spec(5, "gray", shmx.DT_U8, 1, 1),
    shmx.create_stream_spec(6, "rgba", shmx.DT_U8, 4, 4),
]
W, H = 8, 6


def image_frame(i: int) -> Dict[str, bytes]:
    """Frame ``i`` of the image schema: every byte derived from ``i``."""
    return {
        "img": bytes((i * 5 + k * 3) & 255 for k in range(W * H * 3)),
        "width": struct.pack("<I", W),
        "height": struct.pack("<I", H),
        "pos": struct.pack(f"<{3 * (i % 4)}f", *[float(i + k) for k in range(3 * (i % 4))]),
        "gray": bytes((i + k * 7) & 255 for k in range(W * H)),
        "rgba": bytes((i * 3 + k) & 255 for k in range(W * H * 4)),
    }


def serve_images(name: str, shm_dir: str, frames: int = 0) -> shmx.Server:
    server = shmx.serve(name, IMG_STREAMS, frame_bytes_cap=4096, shm_dir=shm_dir)
    for i in range(1, frames + 1):
        server.publish(image_frame(i), sim_time=i * 0.25)
    return server


# A producer in its own process (the owner of the region).
PRODUCER = r"""
import struct, sys, time, shmx
name, shm_dir, frames, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
streams = [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
           shmx.create_stream_spec(2, "blob", shmx.DT_U8, 1, 1),
           shmx.create_stream_spec(7, "xyz", shmx.DT_F64, 3, 24, extra=b"units=m")]
s = shmx.serve(name, streams, slots=16, frame_bytes_cap=8192, shm_dir=shm_dir)
print("ready", flush=True)
if frames == 0:
    time.sleep(120)
end = time.monotonic() + 30
while s.get_header_info()["readers_connected"] < 1 and time.monotonic() < end:
    time.sleep(0.002)
def readers_at(n):
    return all(r["last_frame_seen"] >= n for r in s.snapshot_readers() if r["in_use"])
for i in range(1, frames + 1):
    blob = bytes((i * 13 + k) & 255 for k in range(17 + (i * 31) % 200))
    xyz = struct.pack(f"<{3 * (i % 3)}d", *[i * 0.5 + k for k in range(3 * (i % 3))])
    s.publish({"seq": struct.pack("<Q", i), "blob": blob, "xyz": xyz}, sim_time=i * 0.01 + 1 / 3)
    end = time.monotonic() + 10
    # The first read gives a reader the newest frame: let it take frame 1
    # before frame 2 exists, so an in-order reader sees them all.
    while i == 1 and not readers_at(1) and time.monotonic() < end:
        time.sleep(0.001)
    time.sleep(interval)
end = time.monotonic() + 10
while time.monotonic() < end and not readers_at(frames):
    time.sleep(0.002)
s.destroy()
"""


def start_producer(name: str, shm_dir: str, frames: int = 0, interval: float = 0.0) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", PRODUCER, name, shm_dir, str(frames), str(interval)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


def make_stale(name: str, shm_dir: str) -> None:
    """A region whose owner was killed with SIGKILL."""
    p = start_producer(name, shm_dir)
    p.kill()
    p.wait(timeout=TIMEOUT)


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def make_legacy_region(path: str) -> None:
    """A minimal shmx 1.0.1 region (no extension block) with one frame."""
    desc = struct.pack("<8I", 1, shmx.DT_F64, 1, 0, 8, 0, 4, 0)
    tlv = struct.pack("<II", shmx.TLV_STATIC_DIR, len(desc) + 4) + desc + b"temp"
    tlv += bytes(-len(tlv) % 16)
    session = 0x1234
    payload = (struct.pack("<II", shmx.TLV_FRAME_STREAM, 24) + struct.pack("<4I", 1, 1, 8, 0)
               + struct.pack("<d", 21.5))
    region = bytearray(640)
    region[0:128] = struct.pack(
        "<QIIIIQIIQIIIIIIIIIIIIIIQIIII", 0x48494E415F53484D, 2, 0, 0x01020304, 0, session, 1, 0,
        _fnv1a64(tlv), 128, 128, len(tlv), 2, 128, 384, 64, 2, 64, 256, 384, 0, 0, 0, 1, 1, 0, 1, 0)
    region[128:128 + len(tlv)] = tlv
    region[384:448] = struct.pack("<QQdIIIIQQQ", session, 1, 0.5, len(payload), 1,
                                  lib.shmx_checksum32(payload, len(payload)), 0, 0, 0, 0)
    region[448:448 + len(payload)] = payload
    with open(path, "wb") as f:
        f.write(region)


# --------------------------------------------------------------------- help
def test_help_and_usage() -> None:
    cmds = ("ls", "inspect", "top", "rm", "demo", "bench", "snapshot", "record", "play")
    top, *helps, bare, bogus, badopt, badval, noname = run_many(
        ("--help",), *[(c, "--help") for c in cmds], (), ("frobnicate",), ("ls", "--frob"),
        ("top", "x", "--interval", "-1"), ("inspect",))
    assert top.returncode == 0 and "usage: shmx" in top.stdout
    for cmd, r in zip(cmds, helps):
        assert r.returncode == 0, (cmd, r.stderr)
        assert f"usage: shmx {cmd}" in r.stdout
    assert bare.returncode == 2 and "usage: shmx" in bare.stderr
    assert_error(bogus, 2, "invalid choice")
    assert_error(badopt, 2, "unrecognized arguments")
    assert_error(badval, 2, "interval")
    assert_error(noname, 2, "name")
    exe = shutil.which("shmx")
    if exe:  # the console script of the (editable) install
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 0 and r.stdout.startswith("shmx ")


# ----------------------------------------------------------------------- ls
def test_ls_live_stale_legacy_and_foreign_files(shm_dir: str, unique_name: Callable[[str], str]) -> None:
    assert run("ls", "--dir", shm_dir).stdout.startswith("no shmx regions")
    live, stale = unique_name("live"), unique_name("stale")
    make_stale(stale, shm_dir)
    make_legacy_region(os.path.join(shm_dir, "old-legacy"))
    Path(shm_dir, "junk.bin").write_bytes(os.urandom(4096))
    Path(shm_dir, "tiny").write_bytes(b"x")
    Path(shm_dir, live + "~shmx-new-1-0").write_bytes(b"\0" * 4096)
    os.mkfifo(os.path.join(shm_dir, "a-fifo"))
    server = serve_images(live, shm_dir, frames=3)
    client = shmx.Client()
    try:
        assert client.open(live, shm_dir=shm_dir)
        r = run("--dir", shm_dir, "ls", "--json")  # --dir before the subcommand
        assert r.returncode == 0, r.stderr
        regions = {x["name"]: x for x in json.loads(r.stdout)}
        assert set(regions) == {live, stale, "old-legacy"}
        assert regions[live]["owner"] == "alive" and not regions[live]["stale"]
        assert regions[live]["owner_pid"] == os.getpid()
        assert regions[live]["streams"] == [s["name"] for s in IMG_STREAMS]
        assert regions[live]["readers"] == 1 and regions[live]["frames"] == 3
        assert regions[live]["legacy"] is False
        assert regions[stale]["owner"] == "dead" and regions[stale]["stale"]
        assert regions["old-legacy"]["legacy"] and regions["old-legacy"]["owner"] == "unknown"
        assert regions["old-legacy"]["frames"] == 1

        r = run("ls", "--dir", shm_dir)  # --dir after it
        assert r.returncode == 0, r.stderr
        lines = {line.split()[0]: line for line in r.stdout.splitlines()[1:-1]}
        assert set(lines) == {live, stale, "old-legacy"}
        assert "alive" in lines[live] and "(stale)" in lines[stale] and "legacy" in lines["old-legacy"]
        assert "1 stale" in r.stdout.splitlines()[-1]
    finally:
        client.close()
        server.destroy()


def test_ls_uses_shmx_dir_env(shm_dir: str, unique_name: Callable[[str], str]) -> None:
    name = unique_name("env")
    server = serve_images(name, shm_dir, frames=1)
    try:
        r = run("ls", "--json", env=dict(os.environ, SHMX_DIR=shm_dir))
        assert [x["name"] for x in json.loads(r.stdout)] == [name]
    finally:
        server.destroy()


# ------------------------------------------------------------------ inspect
def test_inspect_text_and_json(shm_dir: str, unique_name: Callable[[str], str]) -> None:
    name = unique_name("insp")
    server = serve_images(name, shm_dir, frames=5)
    client = shmx.Client()
    try:
        assert client.open(name, shm_dir=shm_dir)
        # An in-order reader: it has seen frame 1 (the first read_next gives the
        # latest frame, 5); publish 4 more so its lag is 4.
        assert client.read_next()["__metadata__"]["frame_id"] == 5
        for i in range(6, 10):
            server.publish(image_frame(i), sim_time=i * 0.25)
        r = run("inspect", name, "--dir", shm_dir, "--json")
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        assert rep["frame_seq"] == 9 and rep["header"]["owner"] == "alive"
        assert rep["header"]["extended"] is True and rep["header"]["slots"] == 3
        assert [s["name"] for s in rep["streams"]] == [s["name"] for s in IMG_STREAMS]
        pos = next(s for s in rep["streams"] if s["name"] == "pos")
        assert bytes.fromhex(pos["extra"]) == b"\x01meta"
        (reader,) = rep["readers"]
        assert reader["pid"] == os.getpid() and reader["alive"] is True
        assert reader["last_frame_seen"] == 5 and reader["lag"] == 4
        assert reader["heartbeat_age_s"] is not None and 0 <= reader["heartbeat_age_s"] < 60
        assert rep["latest"]["frame_id"] == 9 and rep["latest"]["sim_time"] == 9 * 0.25
        assert rep["latest"]["streams"]["img"] == {"elem_count": W * H, "bytes": W * H * 3}

        r = run("inspect", name, "--dir", shm_dir)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert f"pid {os.getpid()}, alive" in out and "9 published" in out
        assert "streams (6)" in out and "readers (1)" in out
        lines = out.splitlines()
        at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["SLOT"])
        assert "LAG" in lines[at] and "HEARTBEAT AGE" in lines[at]
        # SLOT PID ALIVE LEGACY LAST-SEEN LAG ...
        assert lines[at + 1].split()[:6] == ["0", str(os.getpid()), "alive", "no", "5", "4"]
    finally:
        client.close()
        server.destroy()


def test_inspect_legacy_and_stale(shm_dir: str, unique_name: Callable[[str], str]) -> None:
    make_legacy_region(os.path.join(shm_dir, "old"))
    r = run("inspect", "old", "--dir", shm_dir)
    assert r.returncode == 0 and "legacy (shmx 1.0.1" in r.stdout and "temp" in r.stdout
    stale = unique_name("stale")
    make_stale(stale, shm_dir)
    rep = json.loads(run("inspect", stale, "--dir", shm_dir, "--json").stdout)
    assert rep["header"]["owner"] == "dead" and rep["header"]["owner_alive"] is False


# ---------------------------------------------------------------------- top
class Publisher:
    """Publishes image frames from a thread while a test watches."""

    def __init__(self, server: shmx.Server, every: float = 0.005) -> None:
        self.server, self.every = server, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            self.server.publish(image_frame(i), sim_time=i)
            time.sleep(self.every)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=TIMEOUT)


def test_top_plain_lines_and_json(shm_dir: str, unique_name: Callable[[str], str]) -> None:
    name = unique_name("top")
    server = serve_images(name, shm_dir, frames=1)
    client = shmx.Client()
    assert client.open(name, shm_dir=shm_dir)
    pub = Publisher(server)
    try:
        r = run("top", name, "--dir", shm_dir, "--iterations", "3", "--interval", "0.1")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.strip().splitlines()
        assert len(lines) == 3 and all(line.startswith(f"{name}: frames=") for line in lines)
        assert "\x1b" not in r.stdout  # not a terminal: no escape sequences
        assert f"[slot0 pid={os.getpid()}" in lines[0]

        r = run("top", name, "--dir", shm_dir, "--iterations", "2", "--interval", "0.2", "--json")
        assert r.returncode == 0, r.stderr
        samples = [json.loads(line) for line in r.stdout.strip().splitlines()]
        assert len(samples) == 2
        s = samples[-1]
        assert s["fps"] > 0 and s["mb_per_s"] > 0 and s["frame_bytes"] > 0
        assert s["owner"] == "alive" and s["frame_seq"] > 1
        (reader,) = s["readers"]
        assert reader["pid"] == os.getpid() and reader["lag"] >= 1
        assert {"frames_read", "frames_dropped", "reads_per_s"} <= set(reader)
    finally:
        pub.close()
        client.close()
        server.destroy()


def _read_all(fd: int, proc: subprocess.Popen, timeout: float,
              until: Optional[bytes] = None) -> bytes:
    """Drain a pty master until the child exits (or ``until`` shows up)."""
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child side closed
                break
            out += chunk
            if until is not None and until in out:
                return out
        elif proc.poll() is not None and until is None:
            break
    return out


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_top_in_a_terminal_restores_it(shm_dir: str, unique_name: Callable[[str], str]) -> None:
    import termios
    name = unique_name("tty")
    server = serve_images(name, shm_dir, frames=1)
    pub = Publisher(server)
    try:
        for quit_with_q in (False, True):
            master, slave = os.openpty()
            before = termios.tcgetattr(slave)
            iterations = "1000" if quit_with_q else "3"
            proc = subprocess.Popen([*CLI, "top", name, "--dir", shm_dir, "--iterations", iterations,
                                     "--interval", "0.1"], stdin=slave, stdout=slave, stderr=slave,
                                    close_fds=True)
            try:
                if quit_with_q:
                    seen = _read_all(master, proc, TIMEOUT, until=b"frames/s")
                    assert b"frames/s" in seen
                    os.write(master, b"q")
                    out = seen + _read_all(master, proc, TIMEOUT)
                else:
                    out = _read_all(master, proc, TIMEOUT)
                assert proc.wait(timeout=TIMEOUT) == 0
                out += _read_all(master, proc, 0.2)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            after = termios.tcgetattr(slave)
            os.close(master)
            os.close(slave)
            text = out.decode("utf-8", "replace")
            assert "\x1b[?1049h" in text and "\x1b[?25l" in text  # alternate screen, no cursor
            assert text.rstrip().endswith("\x1b[?25h\x1b[?1049l"), repr(text[-80:])
            assert "frames/s" in text and "Traceback" not in text
            assert after == before  # echo and line mode are back
    finally:
        pub.close()
        server.destroy()


# ----------------------------------------------------------------------- rm
def test_rm_named_stale_and_refusals(shm_dir: str, unique_name: Callable[[str], str]) -> None:
    live, stale1, stale2 = unique_name("live"), unique_name("stale"), unique_name("stale")
    for n in (stale1, stale2):
        make_stale(n, shm_dir)
    make_legacy_region(os.path.join(shm_dir, "old"))
    Path(shm_dir, "junk.bin").write_bytes(os.urandom(4096))
    server = serve_images(live, shm_dir, frames=1)
    try:
        assert_error(run("rm", live, "--dir", shm_dir), 1, "live server", "--force")
        assert os.path.exists(os.path.join(shm_dir, live))
        assert_error(run("rm", "old", "--dir", shm_dir), 1, "cannot be checked", "--force")
        assert_error(run("rm", "junk.bin", "--dir", shm_dir, "--force"), 1, "not a shmx region")
        assert os.path.exists(os.path.join(shm_dir, "junk.bin"))
        assert_error(run("rm", "missing", "--dir", shm_dir), 1, "no region")
        assert_error(run("rm", "--dir", shm_dir), 2, "--stale")
        assert_error(run("rm", "bad/name", "--dir", shm_dir), 2, "invalid region name")

        r = run("rm", "--stale", "--dry-run", "--dir", shm_dir)
        assert r.returncode == 0 and r.stdout.count("would remove") == 2
        assert os.path.exists(os.path.join(shm_dir, stale1))
        r = run("rm", "--stale", "--dir", shm_dir)
        assert r.returncode == 0, r.stderr
        assert stale1 in r.stdout and stale2 in r.stdout
        left = sorted(os.listdir(shm_dir))
        assert left == sorted([live, "old", "junk.bin"])
        assert run("rm", "--stale", "--dir", shm_dir).stdout.startswith("no stale regions")

        r = run("rm", live, "old", "--force", "--dir", shm_dir)
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(shm_dir)) == ["junk.bin"]
    finally:
        server.destroy()


def test_rm_stale_in_dev_shm(unique_name: Callable[[str], str]) -> None:
    """By name in the default directory (never --stale there: other tests'
    regions may be stale on purpose)."""
    name = unique_name("rmdev")
    make_stale(name, "/dev/shm" if not os.environ.get("SHMX_DIR") else os.environ["SHMX_DIR"])
    r = run("rm", name)
    assert r.returncode == 0 and f"removed {name}" in r.stdout


# --------------------------------------------------------------------- demo
def test_demo_short(shm_dir: str) -> None:
    r = run("demo", "--seconds", "1", "--fps", "100", "--dir", shm_dir, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["received"] > 0 and s["mismatches"] == 0 and s["removed"]
    assert s["published"] >= s["received"]
    assert os.listdir(shm_dir) == []
    assert "fps" in r.stderr and "latency" in r.stderr  # the live line
    assert "Traceback" not in r.stderr


# -------------------------------------------------------------------- bench
def test_bench_not_found_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    from shmx import cli
    from shmx.cli import bench
    monkeypatch.setattr(bench, "find_bench", lambda: None)
    assert cli.main(["bench", "--quick"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tools/bench/ not found" in err[0]


def test_bench_quick(tmp_path: Path) -> None:
    # Arguments pass through untouched; the run is trimmed to one scenario
    # to keep this suite fast (the full --quick run is the bench's own test).
    out = tmp_path / "bench.json"
    r = run("bench", "--quick", "--scenarios", "latency", "--count", "300", "--no-charts",
            "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "latency" in r.stdout and json.loads(out.read_text())
    r = run("bench", "--", "--help")
    assert r.returncode == 0 and "--quick" in r.stdout


# ----------------------------------------------------------------- snapshot
def decode_png(data: bytes) -> Tuple[int, int, int, bytes]:
    """(width, height, color type, pixels) of an 8-bit, non-interlaced PNG,
    checking every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    off, chunks = 8, []
    while off < len(data):
        (length,) = struct.unpack(">I", data[off:off + 4])
        tag, body = data[off + 4:off + 8], data[off + 8:off + 8 + length]
        (crc,) = struct.unpack(">I", data[off + 8 + length:off + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        chunks.append((tag, body))
        off += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and interlace == 0
    raw = zlib.decompress(b"".join(body for tag, body in chunks if tag == b"IDAT"))
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[ctype]
    stride = width * channels
    rows = []
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        assert line[0] == 0  # filter "none"
        rows.append(line[1:])
    return width, height, ctype, b"".join(rows)


def read_npy(path: str) -> Tuple[str, Tuple[int, ...], bytes]:
    import ast
    data = Path(path).read_bytes()
    assert data[:8] == b"\x93NUMPY\x01\x00"
    (hlen,) = struct.unpack("<H", data[8:10])
    assert (10 + hlen) % 64 == 0
    header = ast.literal_eval(data[10:10 + hlen].decode("latin1"))
    assert header["fortran_order"] is False
    return header["descr"], tuple(header["shape"]), data[10 + hlen:]


def test_snapshot_png_and_npy(shm_dir: str, tmp_path: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("snap")
    empty = unique_name("empty")
    server = serve_images(name, shm_dir, frames=7)
    idle = shmx.serve(empty, IMG_STREAMS, shm_dir=shm_dir)
    want = image_frame(7)
    try:
        # RGB, shape from the width/height streams; stream picked by default.
        out = str(tmp_path / "rgb.png")
        r = run("snapshot", name, "-o", out, "--dir", shm_dir, "--stream", "img")
        assert r.returncode == 0, r.stderr
        assert f"{W}x{H} RGB" in r.stdout and "frame 7" in r.stdout
        assert decode_png(Path(out).read_bytes()) == (W, H, 2, want["img"])
        # Gray and RGBA with an explicit shape.
        out = str(tmp_path / "gray.png")
        assert run("snapshot", name, "-s", "gray", "--shape", f"{H}x{W}", "-o", out, "--dir", shm_dir).returncode == 0
        assert decode_png(Path(out).read_bytes()) == (W, H, 0, want["gray"])
        out = str(tmp_path / "rgba.png")
        r = run("snapshot", name, "-s", "rgba", "--shape", f"{H}x{W}x4", "-o", out, "--dir", shm_dir, "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["channels"] == 4
        assert decode_png(Path(out).read_bytes()) == (W, H, 6, want["rgba"])

        # .npy: an image stream gets the image's shape, others the schema's.
        out = str(tmp_path / "img.npy")
        assert run("snapshot", name, "-s", "img", "--npy", "-o", out, "--dir", shm_dir).returncode == 0
        assert read_npy(out) == ("|u1", (H, W, 3), want["img"])
        out = str(tmp_path / "pos.npy")
        assert run("snapshot", name, "-s", "pos", "-o", out, "--dir", shm_dir).returncode == 0
        assert read_npy(out) == ("<f4", (3, 3), want["pos"])  # 7 % 4 = 3 elements of xyz
        try:
            import numpy as np
        except ImportError:
            pass
        else:
            arr = np.load(out)
            assert arr.shape == (3, 3) and arr[2, 2] == 7 + 8

        # Refusals: one line, right exit code.
        assert_error(run("snapshot", name, "-s", "pos", "-o", str(tmp_path / "x.png"), "--dir", shm_dir),
                     1, "use --npy")
        assert_error(run("snapshot", name, "-s", "nope", "-o", str(tmp_path / "x.png"), "--dir", shm_dir),
                     1, "no stream 'nope'")
        assert_error(run("snapshot", name, "-s", "img", "--shape", "2x2", "-o", str(tmp_path / "x.png"),
                         "--dir", shm_dir), 1, "needs 4 bytes")
        assert_error(run("snapshot", name, "--shape", "big", "-o", str(tmp_path / "x.png"), "--dir", shm_dir),
                     2, "--shape")
        assert_error(run("snapshot", empty, "-o", str(tmp_path / "x.png"), "--dir", shm_dir),
                     1, "no frame")
        assert not (tmp_path / "x.png").exists()
    finally:
        idle.destroy()
        server.destroy()


# ----------------------------------------------------------- record / play
def read_recording(path: str) -> Dict[str, Any]:
    """An independent reader of docs/record-format.md."""
    data = Path(path).read_bytes()
    magic, major, _minor, header_bytes = struct.unpack_from("<8sHHI", data, 0)
    assert magic == b"SHMXREC\x00" and major == 1
    off = header_bytes
    rec: Dict[str, Any] = {"frames": [], "end": None, "schema": None}
    while off < len(data):
        kind, length = struct.unpack_from("<II", data, off)
        body = data[off + 8:off + 8 + length]
        assert len(body) == length
        off += 8 + length
        if kind == 1:
            fixed = struct.unpack_from("<QQIIIIII", body)
            p = 40
            (n,) = struct.unpack_from("<I", body, p)
            source = body[p + 4:p + 4 + n].decode()
            p += 4 + n
            (count,) = struct.unpack_from("<I", body, p)
            p += 4
            streams = []
            for _ in range(count):
                sid, dtype, comps, layout, bpe, nlen, elen = struct.unpack_from("<7I", body, p)
                p += 28
                streams.append((sid, body[p:p + nlen].decode(), dtype, comps, layout, bpe,
                                body[p + nlen:p + nlen + elen]))
                p += nlen + elen
            rec["schema"] = {"fixed": fixed, "source": source, "streams": streams}
        elif kind == 2:
            frame_id, sim_time, t_ns, dropped, count = struct.unpack_from("<QdQQI", body)
            p, streams = 36, []
            for _ in range(count):
                sid, elems, nbytes = struct.unpack_from("<III", body, p)
                streams.append((sid, elems, body[p + 12:p + 12 + nbytes]))
                p += 12 + nbytes
            assert p == len(body)
            rec["frames"].append({"frame_id": frame_id, "sim_time": sim_time, "t_ns": t_ns,
                                  "dropped": dropped, "streams": streams})
        elif kind == 3:
            rec["end"] = struct.unpack_from("<QQQ", body)
    return rec


def test_record_play_record_is_identical(shm_dir: str, tmp_path: Path,
                                         unique_name: Callable[[str], str]) -> None:
    src, replay = unique_name("src"), unique_name("replay")
    first, second = str(tmp_path / "first.shmxrec"), str(tmp_path / "second.shmxrec")
    n = 40
    # The recorder waits for the region; the producer waits for the recorder.
    rec1 = subprocess.Popen([*CLI, "record", src, "-o", first, "--frames", str(n), "--wait", "30",
                             "--dir", shm_dir, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    producer = start_producer(src, shm_dir, frames=n, interval=0.004)
    out1, err1 = rec1.communicate(timeout=TIMEOUT)
    assert rec1.returncode == 0, err1
    assert producer.wait(timeout=TIMEOUT) == 0
    s1 = json.loads(out1)
    assert s1["frames"] == n and s1["dropped"] == 0
    assert "Traceback" not in err1

    rec2 = subprocess.Popen([*CLI, "record", replay, "-o", second, "--frames", str(n), "--wait", "30",
                             "--dir", shm_dir, "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    play = run("play", first, "--as", replay, "--dir", shm_dir, "--rate", "2", "--wait-readers", "1",
               "--slots", "16", "--json")
    out2, err2 = rec2.communicate(timeout=TIMEOUT)
    assert play.returncode == 0, play.stderr
    assert json.loads(play.stdout)["frames"] == n
    assert rec2.returncode == 0, err2
    assert f"recorded {n} frames" in out2 and "0 dropped" in out2

    a, b = read_recording(first), read_recording(second)
    assert len(a["frames"]) == len(b["frames"]) == n
    assert a["end"][:2] == b["end"][:2] == (n, 0)
    # The schema came through: ids, names, dtypes, sizes, extra bytes.
    assert a["schema"]["streams"] == b["schema"]["streams"]
    assert a["schema"]["source"] == src and b["schema"]["source"] == replay
    assert [s[1] for s in a["schema"]["streams"]] == ["seq", "blob", "xyz"]
    assert a["schema"]["streams"][2][6] == b"units=m"
    for i, (fa, fb) in enumerate(zip(a["frames"], b["frames"]), start=1):
        assert fa["frame_id"] == fb["frame_id"] == i
        assert fa["sim_time"] == fb["sim_time"] == i * 0.01 + 1 / 3
        assert fa["streams"] == fb["streams"]
        assert fa["streams"][0][2] == struct.pack("<Q", i)
        assert fa["dropped"] == fb["dropped"] == 0
    # Pacing: at --rate 2 the replay took about half the original time.
    span_a = a["frames"][-1]["t_ns"] - a["frames"][0]["t_ns"]
    span_b = b["frames"][-1]["t_ns"] - b["frames"][0]["t_ns"]
    assert span_b >= span_a / 2 * 0.8
    assert sorted(os.listdir(shm_dir)) == []


def test_play_as_fast_as_possible_and_loop(shm_dir: str, tmp_path: Path,
                                           unique_name: Callable[[str], str]) -> None:
    src = unique_name("fast")
    server = serve_images(src, shm_dir, frames=0)
    path = str(tmp_path / "r.shmxrec")
    rec = subprocess.Popen([*CLI, "record", src, "-o", path, "--frames", "5", "--dir", shm_dir, "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: server.get_header_info()["readers_connected"] == 1)
        for i in range(1, 6):
            server.publish(image_frame(i), sim_time=i)
            assert wait_until(lambda: all(r["last_frame_seen"] >= i
                                          for r in server.snapshot_readers() if r["in_use"]))
        assert rec.wait(timeout=TIMEOUT) == 0
    finally:
        if rec.poll() is None:
            rec.kill()
        rec.communicate()
        server.destroy()
    out = run("play", path, "--as", unique_name("again"), "--rate", "0", "--dir", shm_dir, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["frames"] == 5
    # --loop: until stopped (SIGTERM ends it cleanly and removes the region).
    loop_name = unique_name("loop")
    p = subprocess.Popen([*CLI, "play", path, "--as", loop_name, "--rate", "0", "--loop", "--dir", shm_dir,
                          "--json", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    insp = shmx.Inspector()
    try:
        assert wait_until(lambda: insp.open(loop_name, shm_dir=shm_dir))
        assert wait_until(lambda: insp.get_header_info()["frame_seq"] > 20)
    finally:
        insp.close()
        p.send_signal(signal.SIGTERM)
        out_s, err_s = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0, err_s
    summary = json.loads(out_s)
    assert summary["passes"] > 4 and summary["interrupted"]
    assert os.listdir(shm_dir) == []


def test_record_stops_when_the_server_goes(shm_dir: str, tmp_path: Path,
                                           unique_name: Callable[[str], str]) -> None:
    name = unique_name("gone")
    path = str(tmp_path / "g.shmxrec")
    rec = subprocess.Popen([*CLI, "record", name, "-o", path, "--wait", "30", "--dir", shm_dir, "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    producer = start_producer(name, shm_dir, frames=12, interval=0.002)
    out, err = rec.communicate(timeout=TIMEOUT)
    producer.wait(timeout=TIMEOUT)
    assert rec.returncode == 0, err
    s = json.loads(out)
    assert s["frames"] == 12 and s["stopped_by"] == "the server went away"
    assert read_recording(path)["end"][0] == 12


# ------------------------------------------------------------------- errors
def test_errors_are_one_line(shm_dir: str, tmp_path: Path) -> None:
    Path(shm_dir, "junk.bin").write_bytes(os.urandom(4096))
    notrec = tmp_path / "not.rec"
    notrec.write_bytes(b"hello world, not a recording")
    cases = [
        (("inspect", "missing"), 1, "no region"),
        (("inspect", "junk.bin"), 1, "not a shmx region"),
        (("inspect", "bad name"), 2, "invalid region name"),
        (("top", "missing", "--iterations", "1"), 1, "no region"),
        (("snapshot", "missing", "-o", str(tmp_path / "a.png")), 1, "no region"),
        (("record", "missing", "-o", str(tmp_path / "a.rec")), 1, "no region"),
        (("play", str(tmp_path / "nothing.rec"), "--as", "x"), 1, "no such recording"),
        (("play", str(notrec), "--as", "x"), 1, "not a shmx recording"),
        (("play", str(notrec), "--as", "bad/name"), 2, "invalid region name"),
        (("record", "x"), 2, "-o"),
    ]
    results = run_many(*[(*args, "--dir", shm_dir) for args, _, _ in cases])
    for (args, code, words), r in zip(cases, results):
        assert_error(r, code, words)
    assert_error(run("ls", "--dir", str(tmp_path / "nope")), 1, "no such directory")
    assert not (tmp_path / "a.rec").exists() and not (tmp_path / "a.png").exists()
    assert os.listdir(shm_dir) == ["junk.bin"]


def test_play_refuses_a_live_name(shm_dir: str, tmp_path: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("taken")
    server = serve_images(name, shm_dir, frames=0)
    path = tmp_path / "r.shmxrec"
    try:
        # A valid recording: header, schema, end.
        from shmx.cli.shmxrec import RecordingWriter, Schema
        with open(path, "wb") as f:
            w = RecordingWriter(f)
            w.write_schema(Schema(0, 0, 3, 4, 4096, 4096, 0, 0, "x", IMG_STREAMS))
            w.finish(0)
        assert_error(run("play", str(path), "--as", name, "--dir", shm_dir), 1, "alive")
    finally:
        server.destroy()


def _can_drop_dac() -> bool:
    return (os.geteuid() == 0 and shutil.which("setpriv") is not None
            and subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", "true"],
                               capture_output=True).returncode == 0)


@pytest.mark.skipif(not hasattr(os, "geteuid") or not (os.geteuid() != 0 or _can_drop_dac()),
                    reason="cannot test permissions here (POSIX file modes)")
def test_permission_denied(shm_dir: str, unique_name: Callable[[str], str]) -> None:
    name = unique_name("perm")
    server = serve_images(name, shm_dir, frames=1)
    try:
        path = os.path.join(shm_dir, name)
        if os.geteuid() == 0:
            # Root reads everything; without the DAC capabilities it is an
            # ordinary user facing another user's 0600 file.
            os.chown(path, 65534, 65534)
            prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
        else:
            os.chmod(path, 0)
            prefix = []
        r = subprocess.run([*prefix, *CLI, "inspect", name, "--dir", shm_dir], capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert_error(r, 1, "permission denied")
        r = subprocess.run([*prefix, *CLI, "ls", "--dir", shm_dir], capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert r.returncode == 0 and "not readable" in r.stdout and name in r.stdout
    finally:
        server.destroy()


def test_play_survives_hostile_recordings(shm_dir: str, tmp_path: Path,
                                          unique_name: Callable[[str], str]) -> None:
    """A FIFO under the file's name, a frame stamped centuries ahead, and a
    196-byte file claiming a 1 GiB ring: clear errors or a bounded replay,
    never a hang or a huge reservation."""
    from shmx.cli.shmxrec import RecordingWriter, Schema
    fifo = tmp_path / "fifo.shmxrec"
    os.mkfifo(fifo)
    assert_error(run("play", str(fifo), "--as", unique_name("fifo"), "--dir", shm_dir), 1,
                 "not a regular file")
    ahead = tmp_path / "ahead.shmxrec"
    with open(ahead, "wb") as f:
        w = RecordingWriter(f)
        w.write_schema(Schema(0, 0, 3, 4, 4096, 4096, 0, 0, "x", IMG_STREAMS))
        w.write_frame(1, 0.0, 0, 0, [(1, 1, b"\x01" * 3)])
        w.write_frame(2, 0.0, 2 ** 62, 0, [(1, 1, b"\x02" * 3)])  # ~146 years later
        w.finish(0)
    # Bounded by play's longest pause (10 s), not by the timestamp.
    r = run("play", str(ahead), "--as", unique_name("ahead"), "--dir", shm_dir, timeout=60)
    assert r.returncode == 0 and "played 2 frames" in r.stdout, r.stderr
    huge = tmp_path / "huge.shmxrec"
    with open(huge, "wb") as f:
        w = RecordingWriter(f)
        w.write_schema(Schema(0, 0, 4, 4, 4096, 256 << 20, 0, 0, "x", IMG_STREAMS))
        w.write_frame(1, 0.0, 0, 0, [(1, 1, b"\x01" * 3)])
        w.finish(0)
    assert huge.stat().st_size < 400
    name = unique_name("huge")
    proc = subprocess.Popen([*CLI, "play", str(huge), "--as", name, "--dir", shm_dir, "--wait-readers", "1",
                             "--wait-timeout", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        region = Path(shm_dir) / name
        assert wait_until(lambda: region.exists() or proc.poll() is not None, TIMEOUT)
        assert proc.poll() is None, proc.communicate()
        assert region.stat().st_size < 1 << 20  # not 1 GiB
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
        for p in Path(shm_dir).glob(name + "*"):
            p.unlink()
