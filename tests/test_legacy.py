"""Byte-compatibility with shmx 1.0.1, tested against the real package.

The PyPI shmx 1.0.1 package is built once into .peers/shmx101 by
tools/legacy_env.py (the tests skip, saying why, when it cannot be built).
It is imported as ``shmx`` too, so it runs in its own interpreter:
tests/legacy_peer.py, driven line by line over a pipe, in a separate
process from a temporary directory.  Every test puts both implementations
on one region, in both directions, and compares every byte.

What shmx 1.0.1 binds in Python is what we can test: its Server has no
``write_static_append`` binding (the C++ class has it), its Inspector reads
headers, schema and reader slots but no frames.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import queue
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

import shmx

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEER_SCRIPT = pathlib.Path(__file__).resolve().parent / "legacy_peer.py"
SHM_DIR = "/dev/shm"  # shmx 1.0.1 only knows shm_open, i.e. /dev/shm on Linux
CALL_TIMEOUT_S = 30.0

LEGACY_KEYS = ["magic", "version_major", "version_minor", "session_id", "slots", "frame_bytes_cap",
               "reader_slots", "control_per_reader", "frame_seq", "readers_connected"]

STREAMS = [
    shmx.create_stream_spec(1, "positions", shmx.DT_F32, 3, 12, shmx.LAYOUT_AOS_VECTOR, b"\x01units=m"),
    shmx.create_stream_spec(2, "labels", shmx.DT_U8, 1, 1),
    shmx.create_stream_spec(7, "temperature", shmx.DT_F64, 1, 8, None, b"K"),
]


def _load_tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"_shmx_tools_{name}", ROOT / "tools" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


legacy_env = _load_tool("legacy_env")
layout_dump = _load_tool("layout_dump")
checksum32 = layout_dump.checksum32


# ---------------------------------------------------------------- the peer

class LegacyError(RuntimeError):
    """An operation failed inside the shmx 1.0.1 peer."""


class LegacyPeer:
    """A shmx 1.0.1 process answering JSON requests (tests/legacy_peer.py)."""

    def __init__(self, python: pathlib.Path) -> None:
        self._cwd = tempfile.mkdtemp(prefix="shmx101-peer-")
        self.proc = subprocess.Popen([str(python), "-I", str(PEER_SCRIPT)], cwd=self._cwd,
                                     env=legacy_env.legacy_env(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     bufsize=1)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stderr: List[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._collect, daemon=True).start()

    @staticmethod
    def _pump(stream: Any, q: "queue.Queue[Optional[str]]") -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def call(self, op: str, timeout: float = CALL_TIMEOUT_S, **args: Any) -> Any:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise LegacyError(f"legacy peer did not answer {op!r} within {timeout}s") from None
        except (BrokenPipeError, OSError) as exc:
            line = None
            if not isinstance(exc, BrokenPipeError):
                raise
        if line is None:
            self.proc.wait(timeout=5)
            raise LegacyError(f"legacy peer exited (code {self.proc.returncode}) during {op!r}: "
                              f"{''.join(self._stderr)[-3000:]}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise LegacyError(f"{op}: {reply['error']}")
        return reply["result"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("exit", timeout=10)
                self.proc.wait(timeout=10)
        except (LegacyError, subprocess.TimeoutExpired, OSError):
            pass
        finally:
            self.kill()
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    if f:
                        f.close()
                except OSError:
                    pass
            shutil.rmtree(self._cwd, ignore_errors=True)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def legacy_python() -> pathlib.Path:
    """The shmx 1.0.1 venv's python (built on first use, cached in .peers/)."""
    shm = os.environ.get("SHMX_DIR")
    if shm and os.path.realpath(shm) != os.path.realpath(SHM_DIR):
        pytest.skip(f"SHMX_DIR={shm}: shmx 1.0.1 only creates and opens regions in {SHM_DIR}")
    if not os.path.isdir(SHM_DIR):
        pytest.skip(f"no {SHM_DIR} on this system")
    try:
        return legacy_env.ensure_legacy_python(ROOT)
    except RuntimeError as exc:
        reason = f"shmx 1.0.1 could not be built: {exc}"
        print(reason, file=sys.stderr)
        pytest.skip(reason)


class Legacy:
    """Peers plus region names; torn down in that order (peers first, so a
    legacy server is destroyed before its file is removed)."""

    def __init__(self, python: pathlib.Path, unique_name: Callable[[str], str]) -> None:
        self._python = python
        self._unique_name = unique_name
        self.peers: List[LegacyPeer] = []
        self.names: List[str] = []

    def peer(self) -> LegacyPeer:
        p = LegacyPeer(self._python)
        self.peers.append(p)
        return p

    def name(self, tag: str) -> str:
        n = self._unique_name(tag)
        self.names.append(n)
        return n

    def teardown(self) -> None:
        for p in self.peers:
            p.close()
        # shmx 1.0.1's Server.destroy() unmaps but never unlinks its region.
        for n in self.names:
            try:
                os.unlink(os.path.join(SHM_DIR, n))
            except FileNotFoundError:
                pass


@pytest.fixture
def legacy(legacy_python: pathlib.Path, unique_name: Callable[[str], str]) -> Iterator[Legacy]:
    env = Legacy(legacy_python, unique_name)
    try:
        yield env
    finally:
        env.teardown()


# ----------------------------------------------------------------- helpers

def legacy_specs(specs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Stream specs in the peer's JSON form (extra as hex)."""
    out = []
    for s in specs:
        d = {k: v for k, v in s.items() if k != "extra"}
        if "extra" in s:
            d["extra_hex"] = s["extra"].hex()
        out.append(d)
    return out


def legacy_streams_as_ours(streams: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for s in streams:
        d = dict(s)
        if "extra" in d:
            d["extra"] = bytes.fromhex(d["extra"])
        out.append(d)
    return out


def align16(n: int) -> int:
    return (n + 15) & ~15


def make_frame(rng: random.Random, k: int, specs: List[Dict[str, Any]] = STREAMS) -> Dict[int, bytes]:
    """Frame k: random bytes per stream, sizes varying (0 elements and
    sizes that are not multiples of 16 included), one stream left out now
    and then."""
    frame: Dict[int, bytes] = {}
    for j, s in enumerate(specs):
        if (k + j) % 5 == 4:
            continue
        count = (k * 7 + j * 13) % 40 if (k + j) % 7 else 0
        frame[s["id"]] = rng.randbytes(count * s["bytes_per_elem"])
    return frame


def payload_bytes(frame: Dict[int, bytes]) -> int:
    return sum(align16(8 + 16 + len(b)) for b in frame.values())


def legacy_publish(peer: LegacyPeer, frame: Dict[int, bytes], sim_time: float,
                   specs: List[Dict[str, Any]] = STREAMS) -> None:
    bpe = {s["id"]: s["bytes_per_elem"] for s in specs}
    res = peer.call("server_publish", sim_time=sim_time,
                    streams=[[sid, data.hex(), len(data) // bpe[sid]] for sid, data in frame.items()])
    assert all(res["appended"]) and res["published"], res


def our_publish(server: shmx.Server, frame: Dict[int, bytes], sim_time: float) -> None:
    h = server.begin_frame()
    assert h is not None, server.last_error
    bpe = {s["id"]: s["bytes_per_elem"] for s in server.get_streams_info()}
    for sid, data in frame.items():
        assert server.append_stream(h, sid, data, len(data) // bpe[sid]), server.last_error
    assert server.publish_frame(h, sim_time), server.last_error


def check_frame(got: Optional[Dict[str, Any]], frame: Dict[int, bytes], frame_id: int, sim_time: float,
                names: Dict[int, str], bpe: Dict[int, int], hex_data: bool = False) -> None:
    """``got`` (a get_latest_frame dict, ours or the legacy one) holds exactly
    ``frame``, byte for byte, with the right metadata."""
    assert got is not None
    meta = got["__metadata__"]
    assert meta["frame_id"] == frame_id
    assert meta["sim_time"] == sim_time
    assert meta["payload_bytes"] == payload_bytes(frame)
    assert meta["tlv_count"] == len(frame)
    assert sorted(k for k in got if k != "__metadata__") == sorted(names[sid] for sid in frame)
    for sid, data in frame.items():
        entry = got[names[sid]]
        raw = bytes.fromhex(entry["data"]) if hex_data else bytes(entry["data"])
        assert raw == data, f"stream {sid} differs"
        assert entry["bytes"] == len(data)
        assert entry["elem_count"] == len(data) // bpe[sid]


def raw_region(name: str) -> bytes:
    with open(os.path.join(SHM_DIR, name), "rb") as f:
        return f.read()


def raw_latest_header(name: str) -> Dict[str, Any]:
    """Header and payload of the latest frame, read from the file."""
    buf = raw_region(name)
    slots, stride, off = struct.unpack_from("<III", buf, 60)
    w = struct.unpack_from("<I", buf, 112)[0]
    at = off + ((w - 1) % slots) * stride
    fid, sim, nbytes, ntlv, csum = struct.unpack_from("<QdIII", buf, at + 8)
    return {"frame_id": fid, "sim_time": sim, "payload_bytes": nbytes, "tlv_count": ntlv,
            "checksum": csum, "payload": buf[at + 64:at + 64 + nbytes]}


def static_dir_tlv(stream_id: int, name: str, dtype: int, components: int, bpe: int,
                   layout: int = 0, extra: bytes = b"") -> bytes:
    """One TLV_STATIC_DIR entry, padded to 16, as write_static_append takes it."""
    nm = name.encode()
    body = struct.pack("<8I", stream_id, dtype, components, layout, bpe, 0, len(nm), len(extra)) + nm + extra
    tlv = struct.pack("<II", shmx.TLV_STATIC_DIR, len(body)) + body
    return tlv + b"\0" * (align16(len(tlv)) - len(tlv))


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


NAMES = {s["id"]: s["name"] for s in STREAMS}
BPE = {s["id"]: s["bytes_per_elem"] for s in STREAMS}


# ======================================================= legacy server, us

def test_legacy_package_is_the_real_one(legacy: Legacy) -> None:
    peer = legacy.peer()
    v = peer.call("version")
    assert v["version"] == "1.0.1"
    assert v["layout"] == [2, 0]
    assert str(legacy_env.peer_dir(ROOT)) in v["file"], "the peer must import the PyPI package, not ours"


def test_our_client_reads_every_legacy_frame(legacy: Legacy) -> None:
    peer, name = legacy.peer(), legacy.name("l2o")
    assert peer.call("server_create", name=name, slots=3, streams=legacy_specs(STREAMS))
    rng = random.Random(1)
    early = make_frame(rng, 0)
    legacy_publish(peer, early, 0.25)  # published before we attach: still readable
    with shmx.Client() as c:
        assert c.open(name), c.last_error
        check_frame(c.get_latest_frame(), early, 1, 0.25, NAMES, BPE)
        for k in range(1, 12):  # several turns of the 3-slot ring
            frame = make_frame(rng, k)
            legacy_publish(peer, frame, k * 0.5)
            check_frame(c.get_latest_frame(), frame, k + 1, k * 0.5, NAMES, BPE)
            # The raw frame header agrees with what we decoded.
            raw = raw_latest_header(name)
            assert raw["frame_id"] == k + 1 and raw["checksum"] == checksum32(raw["payload"])
        assert c.get_header_info()["frame_seq"] == 12
        assert peer.call("server_header")["frame_seq"] == 12


def test_legacy_region_header_schema_and_raw_offsets(legacy: Legacy) -> None:
    peer, name = legacy.peer(), legacy.name("l2o-hdr")
    assert peer.call("server_create", name=name, slots=4, reader_slots=5, static_bytes_cap=1000,
                     frame_bytes_cap=3000, control_per_reader=512, streams=legacy_specs(STREAMS))
    legacy_publish(peer, make_frame(random.Random(2), 1), 1.0)
    with shmx.Client() as c:
        assert c.open(name), c.last_error
        assert peer.call("client_open", name=name)  # a legacy reader too
        ours = c.get_header_info()
        theirs = peer.call("server_header")
        assert {k: ours[k] for k in LEGACY_KEYS} == theirs
        assert theirs["readers_connected"] == 2
        assert ours["extended"] is False and ours["owner_alive"] is None
        assert ours["checksum"] == "always"  # a legacy producer always checksums
        assert ours["slot_payload_cap"] == ours["frame_bytes_cap"] == 3000
        # Same schema through both clients, extra bytes included.
        assert c.get_streams_info() == legacy_streams_as_ours(peer.call("client_streams"))
        assert c.get_streams_info() == expected_streams(STREAMS)
        # DESIGN §2 offsets, read from the file shmx 1.0.1 wrote.
        buf = raw_region(name)
        at = {f: struct.unpack_from("<" + code, buf, off)[0] for f, code, off in layout_dump.GLOBAL_HEADER}
        assert at["magic"] == theirs["magic"] == 0x48494E415F53484D
        assert (at["ver_major"], at["ver_minor"], at["endianness"]) == (2, 0, 0x01020304)
        assert at["session_id"] == theirs["session_id"]
        assert at["slots"] == 4 and at["reader_slots"] == 5 and at["frame_bytes_cap"] == 3000
        assert at["control_per_reader"] == 512 and at["control_stride"] == 512
        assert at["frame_seq"] == 1 and at["write_index"] == 1 and at["readers_connected"] == 2
        assert at["static_offset"] == 128  # no room for our extension: read as legacy
        assert at["static_gen"] == ours["static_gen"] == 1
        assert at["static_bytes_used"] == ours["static_bytes_used"]
        assert at["static_hash"] == layout_dump.fnv1a64(buf[128:128 + at["static_bytes_used"]])
        assert at["slot_stride"] == 64 + 3008  # header + frame_bytes_cap rounded up to 64
        assert at["readers_offset"] % 64 == 0 and at["control_offset"] % 64 == 0 and at["slots_offset"] % 64 == 0
        assert len(buf) == at["slots_offset"] + 4 * at["slot_stride"] == ours["total_bytes"]
        # Our reader attached without writing any extension field.
        rep = layout_dump.parse(buf)
        assert rep["extension"] is None and not rep["errors"]
        used = [r for r in rep["readers"] if r["in_use"]]
        assert len(used) == 2
        for r in used:
            assert r["mark"] == 0 and r["pid"] == 0 and r["frames_read"] == 0
        assert c.reader_id in {r["reader_id"] for r in used}
        peer.call("client_close")


def expected_streams(specs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """get_streams_info() as the documented API shapes it, from specs."""
    out = []
    for s in specs:
        d = {"id": s["id"], "name": s["name"], "dtype": shmx.dtype_to_string(s["dtype_code"]),
             "dtype_code": s["dtype_code"], "components": s["components"],
             "layout": shmx.layout_to_string(s.get("layout_code", 0)), "bytes_per_elem": s["bytes_per_elem"]}
        if s.get("extra"):
            d["extra"] = s["extra"]
        out.append(d)
    return out


def test_our_client_reads_what_only_a_legacy_server_writes(legacy: Legacy) -> None:
    """shmx 1.0.1 checks nothing at publish: unknown stream ids, element
    counts that disagree with the byte count, a stream twice in one frame,
    dtype and layout codes it has no name for.  Our Client reads such frames
    exactly as the legacy Client does."""
    peer, name = legacy.peer(), legacy.name("l2o-odd")
    odd = STREAMS + [{"id": 40, "name": "odd", "dtype_code": 0, "components": 0, "bytes_per_elem": 0,
                      "layout_code": 7}]
    assert peer.call("server_create", name=name, streams=legacy_specs(odd))
    assert peer.call("client_open", name=name)
    streams = [[99, "0a0b0c", 3],          # not in the schema
               [1, (b"\x01" * 12).hex(), 5],  # 5 elements in 12 bytes
               [2, "ff", 1], [2, "eeee", 2],  # twice: the later one wins in a dict
               [40, "", 0]]
    res = peer.call("server_publish", streams=streams, sim_time=-1.5)
    assert all(res["appended"]) and res["published"]
    with shmx.Client() as c:
        assert c.open(name), c.last_error
        mine = c.get_latest_frame()
        theirs = peer.call("client_latest")
        assert mine is not None and theirs is not None
        # 5 elements in 12 bytes has no array shape: a clear error naming
        # the stream, not numpy's bare ValueError.
        with pytest.raises(shmx.CorruptRegionError, match="'positions' has elem_count 5"):
            c.as_arrays(mine)
        assert mine.pop("__metadata__") == dict(theirs.pop("__metadata__"), dropped=0)
        assert {k: {"data": bytes(v["data"]).hex(), "elem_count": v["elem_count"], "bytes": v["bytes"]}
                for k, v in mine.items()} == theirs
        assert set(theirs) == {"stream_99", "positions", "labels", "odd"}
        assert theirs["labels"]["data"] == "eeee"
        info = {s["id"]: s for s in c.get_streams_info()}
        assert (info[40]["dtype"], info[40]["layout"]) == ("unknown", "unknown")
        assert c.get_streams_info() == legacy_streams_as_ours(peer.call("client_streams"))
    peer.call("client_close")


@pytest.mark.parametrize("control_per_reader", [4096, 256, 200])
def test_control_from_our_client_to_legacy_server(legacy: Legacy, control_per_reader: int) -> None:
    """Every message arrives once, in order, byte for byte, across ring
    wrap-arounds (200 is not a multiple of 16: only shmx 1.0.1 makes such
    rings)."""
    peer, name = legacy.peer(), legacy.name("l2o-ctl")
    assert peer.call("server_create", name=name, control_per_reader=control_per_reader,
                     streams=legacy_specs(STREAMS))
    rng = random.Random(control_per_reader)
    msgs = [(0x3000 + i, b"" if i % 6 == 5 else rng.randbytes(rng.randrange(1, 90))) for i in range(60)]
    got: List[Dict[str, Any]] = []
    with shmx.Client() as c:
        assert c.open(name), c.last_error
        i = 0
        full_seen = False
        while i < len(msgs):
            typ, data = msgs[i]
            ok = c.send_control(typ, data) if data else c.send_control_empty(typ)
            if ok:
                i += 1
                continue
            full_seen = True
            assert "full" in c.last_error
            drained = peer.call("server_poll_control", max_messages=256)
            assert drained, f"ring full but the legacy server got nothing: {c.last_error}"
            got += drained
        got += peer.call("server_poll_control", max_messages=256)
        assert peer.call("server_poll_control") == []
        assert [(m["type"], bytes.fromhex(m["data"])) for m in got] == msgs
        assert {m["reader_id"] for m in got} == {c.reader_id}
        assert full_seen == (control_per_reader < 4096)


def test_what_a_legacy_server_does_not_give_our_client(legacy: Legacy) -> None:
    """No ordered reads, no liveness; waiting falls back to polling."""
    peer, name = legacy.peer(), legacy.name("l2o-lim")
    assert peer.call("server_create", name=name, streams=legacy_specs(STREAMS))
    rng = random.Random(3)
    with shmx.Client() as c:
        assert c.open(name), c.last_error
        assert c.get_latest_frame() is None and "no frame" in c.last_error
        assert c.server_alive() is None
        first = make_frame(rng, 1)
        legacy_publish(peer, first, 1.0)
        assert c.read_next() is None and "1.0.1" in c.last_error
        check_frame(c.get_latest_frame(), first, 1, 1.0, NAMES, BPE)
        assert c.wait_frame(timeout=0.05) is None  # nothing newer
        later = make_frame(rng, 2)
        t = threading.Timer(0.3, lambda: legacy_publish(peer, later, 2.0))
        t.start()
        try:
            got = c.wait_frame(timeout=20)
        finally:
            t.join(timeout=30)
        check_frame(got, later, 2, 2.0, NAMES, BPE)
        peer.call("server_destroy")
        # shmx 1.0.1 leaves no trace of its end: no closed flag, no lock.
        assert c.get_header_info()["closed"] is False and c.server_alive() is None


# ======================================================= our server, legacy

def test_legacy_client_reads_every_frame_of_ours(legacy: Legacy, unique_name: Callable[[str], str]) -> None:
    name = unique_name("o2l")
    peer = legacy.peer()
    rng = random.Random(4)
    with shmx.Server() as s, shmx.Client() as ours:
        assert s.create(name, slots=3, streams=STREAMS), s.last_error  # checksum="auto"
        assert ours.open(name), ours.last_error
        assert peer.call("client_open", name=name)
        for k in range(12):
            frame = make_frame(rng, k)
            our_publish(s, frame, k * 0.125)
            check_frame(peer.call("client_latest"), frame, k + 1, k * 0.125, NAMES, BPE, hex_data=True)
            check_frame(ours.get_latest_frame(), frame, k + 1, k * 0.125, NAMES, BPE)
            raw = raw_latest_header(name)
            assert raw["checksum"] == checksum32(raw["payload"]) != 0
        readers = [r for r in s.snapshot_readers() if r["in_use"]]
        assert sorted(r["legacy"] for r in readers) == [False, True]
        leg = next(r for r in readers if r["legacy"])
        assert leg["alive"] is None and leg["pid"] == 0  # no lock, no pid: only a heartbeat
        assert leg["last_frame_seen"] == 12
        assert abs(leg["heartbeat"] - time.monotonic_ns()) < 60e9  # CLOCK_MONOTONIC ns on both sides
        peer.call("client_close")


def test_checksum_auto_follows_legacy_readers(legacy: Legacy, unique_name: Callable[[str], str]) -> None:
    name = unique_name("o2l-auto")
    peer = legacy.peer()
    rng = random.Random(5)
    with shmx.Server() as s, shmx.Client() as ours:
        assert s.create(name, streams=STREAMS, checksum="auto"), s.last_error
        assert s.get_header_info()["checksum"] == "auto"
        assert ours.open(name)
        our_publish(s, make_frame(rng, 1), 1.0)
        assert raw_latest_header(name)["checksum"] == 0, "pure deployment: no checksum cost"
        assert peer.call("client_open", name=name)
        # The frame published before it attached carries no checksum: the
        # legacy reader rejects it until the next publish.
        assert peer.call("client_latest") is None
        frame = make_frame(rng, 2)
        our_publish(s, frame, 2.0)
        raw = raw_latest_header(name)
        assert raw["checksum"] == checksum32(raw["payload"])
        check_frame(peer.call("client_latest"), frame, 2, 2.0, NAMES, BPE, hex_data=True)
        peer.call("client_close")
        frame = make_frame(rng, 3)
        our_publish(s, frame, 3.0)
        assert raw_latest_header(name)["checksum"] == 0, "legacy reader gone: checksums stop"
        check_frame(ours.get_latest_frame(), frame, 3, 3.0, NAMES, BPE)


def test_checksum_never_and_always(legacy: Legacy, unique_name: Callable[[str], str]) -> None:
    peer = legacy.peer()
    rng = random.Random(6)
    never, always = unique_name("o2l-never"), unique_name("o2l-always")
    with shmx.Server() as s:
        assert s.create(never, streams=STREAMS, checksum="never"), s.last_error
        assert peer.call("client_open", name=never)
        our_publish(s, make_frame(rng, 1), 1.0)
        assert raw_latest_header(never)["checksum"] == 0
        # A legacy reader cannot use a region that never checksums.
        assert peer.call("client_latest") is None
        peer.call("client_close")
    with shmx.Server() as s:
        assert s.create(always, streams=STREAMS, checksum="always"), s.last_error
        frame = make_frame(rng, 2)
        our_publish(s, frame, 2.0)  # no reader at all, checksum anyway
        raw = raw_latest_header(always)
        assert raw["checksum"] == checksum32(raw["payload"]) != 0
        assert peer.call("client_open", name=always)
        check_frame(peer.call("client_latest"), frame, 1, 2.0, NAMES, BPE, hex_data=True)
        peer.call("client_close")


def test_auto_cannot_see_a_legacy_reader_without_a_reader_slot(legacy: Legacy,
                                                              unique_name: Callable[[str], str]) -> None:
    """shmx 1.0.1's Client.open() succeeds even when every reader slot is
    taken; such a reader leaves no trace, so checksum="auto" cannot know it
    is there and it reads nothing.  "always" serves it."""
    peer = legacy.peer()
    for policy, readable in (("auto", False), ("always", True)):
        name = unique_name(f"o2l-noslot-{policy}")
        with shmx.Server() as s, shmx.Client() as ours:
            assert s.create(name, reader_slots=1, streams=STREAMS, checksum=policy), s.last_error
            assert ours.open(name)  # takes the only reader slot
            assert peer.call("client_open", name=name)  # "succeeds" without a slot
            assert s.get_header_info()["readers_connected"] == 1
            frame = make_frame(random.Random(14), 1)
            our_publish(s, frame, 1.0)
            got = peer.call("client_latest")
            if readable:
                check_frame(got, frame, 1, 1.0, NAMES, BPE, hex_data=True)
            else:
                assert got is None
            peer.call("client_close")


def test_legacy_client_sees_our_schema_header_and_static_append(legacy: Legacy,
                                                                unique_name: Callable[[str], str]) -> None:
    name = unique_name("o2l-static")
    peer = legacy.peer()
    with shmx.Server() as s, shmx.Client() as ours:
        assert s.create(name, slots=4, reader_slots=6, static_bytes_cap=2048, frame_bytes_cap=5000,
                        control_per_reader=1024, streams=STREAMS), s.last_error
        assert ours.open(name)
        assert peer.call("client_open", name=name)
        assert legacy_streams_as_ours(peer.call("client_streams")) == ours.get_streams_info() \
            == s.get_streams_info()
        mine, theirs = s.get_header_info(), peer.call("client_header")
        # frame_bytes_cap in the header is the slot's payload capacity
        # (framing included), as shmx 1.0.1 defines it; our API reports the
        # user data cap as frame_bytes_cap and the slot's as slot_payload_cap.
        assert theirs["frame_bytes_cap"] == mine["slot_payload_cap"]
        assert mine["frame_bytes_cap"] == 5000 <= mine["slot_payload_cap"]
        assert {k: v for k, v in theirs.items() if k != "frame_bytes_cap"} == \
            {k: mine[k] for k in LEGACY_KEYS if k != "frame_bytes_cap"}
        assert theirs["readers_connected"] == 2
        # Append a stream descriptor to the static directory.
        extra = bytes(range(19))
        entry = static_dir_tlv(9, "flags", shmx.DT_U16, 2, 4, shmx.LAYOUT_AOS_VECTOR, extra)
        assert s.write_static_append(entry), s.last_error
        assert peer.call("client_refresh_static")
        assert ours.refresh_static()
        want = {"id": 9, "name": "flags", "dtype": "uint16", "dtype_code": shmx.DT_U16, "components": 2,
                "layout": "vector", "bytes_per_elem": 4, "extra": extra}
        assert legacy_streams_as_ours(peer.call("client_streams"))[-1] == want
        assert ours.get_streams_info()[-1] == want
        hdr = peer.call("client_header")
        assert ours.get_header_info()["static_gen"] == 2
        buf = raw_region(name)
        used = struct.unpack_from("<I", buf, 56)[0]
        assert struct.unpack_from("<Q", buf, 40)[0] == layout_dump.fnv1a64(buf[256:256 + used])
        assert buf[256 + used - len(entry):256 + used] == entry
        assert hdr["session_id"] == mine["session_id"]
        # A frame carrying the new stream, read by name on both sides.
        frame = {1: b"\x11" * 24, 9: bytes(range(40))}
        our_publish(s, frame, 9.5)
        names = {**NAMES, 9: "flags"}
        bpe = {**BPE, 9: 4}
        check_frame(peer.call("client_latest"), frame, 1, 9.5, names, bpe, hex_data=True)
        check_frame(ours.get_latest_frame(), frame, 1, 9.5, names, bpe)
        peer.call("client_close")


@pytest.mark.parametrize("control_per_reader", [4096, 256])
def test_control_from_legacy_client_to_our_server(legacy: Legacy, unique_name: Callable[[str], str],
                                                  control_per_reader: int) -> None:
    name = unique_name("o2l-ctl")
    peer = legacy.peer()
    rng = random.Random(control_per_reader + 1)
    msgs = [(0x3000 + i, b"" if i % 7 == 3 else rng.randbytes(rng.randrange(1, 100))) for i in range(50)]
    with shmx.Server() as s:
        assert s.create(name, control_per_reader=control_per_reader, streams=STREAMS), s.last_error
        assert peer.call("client_open", name=name)
        leg = [r for r in s.snapshot_readers() if r["in_use"]]
        assert len(leg) == 1 and leg[0]["legacy"]
        got: List[Dict[str, Any]] = []
        i = 0
        while i < len(msgs):
            typ, data = msgs[i]
            ok = (peer.call("client_send_control", type=typ, data_hex=data.hex()) if data
                  else peer.call("client_send_control_empty", type=typ))
            if ok:
                i += 1
                continue
            drained = s.poll_control()
            assert drained, "legacy ring full but our server got nothing"
            got += drained
        got += s.poll_control()
        assert [(m["type"], m["data"]) for m in got] == msgs
        assert {m["reader_id"] for m in got} == {leg[0]["reader_id"]}
        assert {m["reader_index"] for m in got} == {leg[0]["index"]}
        # wait_control notices a legacy sender (which wakes nobody) by polling.
        assert s.wait_control(timeout=0.05) is False
        t = threading.Timer(0.3, lambda: peer.call("client_send_control", type=0x3100, data_hex="cafe"))
        t.start()
        try:
            assert s.wait_control(timeout=20) is True
        finally:
            t.join(timeout=30)
        assert [(m["type"], m["data"]) for m in s.poll_control()] == [(0x3100, b"\xca\xfe")]
        peer.call("client_close")


# ================================================================ inspectors

def test_our_inspector_on_a_legacy_region(legacy: Legacy) -> None:
    peer, name = legacy.peer(), legacy.name("insp-l")
    assert peer.call("server_create", name=name, slots=2, streams=legacy_specs(STREAMS))
    assert peer.call("client_open", name=name)
    frame = make_frame(random.Random(7), 3)
    legacy_publish(peer, frame, 3.0)
    assert peer.call("client_latest") is not None  # the legacy reader's heartbeat/last_frame_seen
    assert peer.call("inspector_open", name=name)
    with shmx.Inspector() as ins:
        assert ins.open(name), ins.last_error
        h = ins.get_header_info()
        assert {k: h[k] for k in LEGACY_KEYS} == peer.call("inspector_header") == peer.call("server_header")
        assert h["extended"] is False and h["owner_alive"] is None
        assert ins.get_streams_info() == legacy_streams_as_ours(peer.call("inspector_streams"))
        theirs = peer.call("inspector_readers")
        mine = ins.get_readers_info()
        assert [{k: r[k] for k in ("reader_id", "heartbeat", "last_frame_seen", "in_use")} for r in mine] == theirs
        assert [r["legacy"] for r in mine if r["in_use"]] == [True]
        copy = ins.copy_latest()
        check_frame(copy, frame, 1, 3.0, NAMES, BPE)
        report, lreport = ins.inspect(), peer.call("inspector_inspect")
        for key in ("session_id", "static_gen", "frame_seq", "readers_connected"):
            assert report[key] == lreport[key]
        assert report["streams"] == legacy_streams_as_ours(lreport["streams"])
    for op in ("inspector_close", "client_close", "server_destroy"):
        peer.call(op)


def test_legacy_inspector_on_our_region(legacy: Legacy, unique_name: Callable[[str], str]) -> None:
    name = unique_name("insp-o")
    peer = legacy.peer()
    frame = make_frame(random.Random(8), 2)
    with shmx.Server() as s, shmx.Client() as c:
        assert s.create(name, slots=3, reader_slots=4, streams=STREAMS), s.last_error
        assert c.open(name)
        our_publish(s, frame, 2.0)
        assert c.get_latest_frame() is not None
        assert peer.call("inspector_open", name=name)
        mine = s.get_header_info()
        theirs = peer.call("inspector_header")
        assert theirs["frame_bytes_cap"] == mine["slot_payload_cap"]
        assert {k: v for k, v in theirs.items() if k != "frame_bytes_cap"} == \
            {k: mine[k] for k in LEGACY_KEYS if k != "frame_bytes_cap"}
        assert legacy_streams_as_ours(peer.call("inspector_streams")) == s.get_streams_info()
        lreaders = peer.call("inspector_readers")
        ours = s.snapshot_readers()
        assert lreaders == [{k: r[k] for k in ("reader_id", "heartbeat", "last_frame_seen", "in_use")}
                            for r in ours]
        assert [r["reader_id"] for r in lreaders if r["in_use"]] == [c.reader_id]
        rep = peer.call("inspector_inspect")
        assert (rep["session_id"], rep["static_gen"], rep["frame_seq"], rep["readers_connected"]) == \
            (mine["session_id"], mine["static_gen"], 1, 1)
        assert legacy_streams_as_ours(rep["streams"]) == s.get_streams_info()
        assert rep["readers"] == lreaders
        peer.call("inspector_close")


def test_waiting_on_a_legacy_server_never_returns_an_old_frame(legacy: Legacy) -> None:
    """shmx 1.0.1 bumps frame_seq before it checksums the payload and moves
    write_index: a waiter must not take the bump alone as "a new frame is
    there" (it would hand back the frame it already had)."""
    peer, name = legacy.peer(), legacy.name("l2o-wait")
    big = 4 << 20
    spec = [shmx.create_stream_spec(3, "blob", shmx.DT_U8, 1, 1)]
    assert peer.call("server_create", name=name, slots=3, frame_bytes_cap=big + 64, streams=legacy_specs(spec))
    count = 40
    with shmx.Client() as c:
        assert c.open(name), c.last_error
        done: List[Any] = []
        t = threading.Thread(target=lambda: done.append(
            peer.call("server_publish_burst", count=count, stream_id=3, nbytes=big, interval_s=0.002,
                      timeout=120)))
        t.start()
        seen: List[int] = []
        try:
            while True:
                f = c.wait_frame(timeout=10)
                if f is None:
                    seen.append(c.last_error)  # type: ignore[arg-type]
                    break
                seen.append(f["__metadata__"]["frame_id"])
                if seen[-1] >= count:
                    break
        finally:
            t.join(timeout=150)
        assert done == [True]
        repeats = [b for a, b in zip(seen, seen[1:]) if b <= a]
        assert not repeats, f"wait_frame returned a frame it had already returned: {seen}"
        assert seen and seen[-1] == count


# ============================== shmx 1.0.1's C++ library (unbound parts)

CPP_DRIVER = pathlib.Path(__file__).resolve().parent / "legacy_cpp" / "static_append.cpp"


@pytest.fixture(scope="session")
def legacy_static_append_exe(legacy_python: pathlib.Path) -> pathlib.Path:
    """tests/legacy_cpp/static_append.cpp built against shmx 1.0.1's headers."""
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        pytest.skip("no C++ compiler to build the shmx 1.0.1 C++ driver")
    try:
        include = legacy_env.ensure_legacy_headers(ROOT)
    except RuntimeError as exc:
        pytest.skip(f"shmx 1.0.1 headers unavailable: {exc}")
    out = legacy_env.peer_dir(ROOT) / "bin" / "static_append"
    if out.exists() and out.stat().st_mtime >= CPP_DRIVER.stat().st_mtime:
        return out
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_name(f"static_append.{os.getpid()}.tmp")
    proc = subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-I", str(include), str(CPP_DRIVER), "-o", str(tmp),
                           "-pthread", "-lrt"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"building the C++ driver failed:\n{proc.stderr[-3000:]}"
    os.replace(tmp, out)  # atomic: a concurrent run sees the old or the new binary
    return out


class CppPeer:
    """The C++ driver: one command per line, "ok"/"fail" per answer."""

    def __init__(self, exe: pathlib.Path, name: str) -> None:
        self.proc = subprocess.Popen([str(exe), name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=LegacyPeer._pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        first = self._read()
        if first != "created":
            self.close()
            raise LegacyError(f"C++ driver did not create {name}: {first!r}")

    def _read(self) -> Optional[str]:
        try:
            line = self._lines.get(timeout=CALL_TIMEOUT_S)
        except queue.Empty:
            self.close()
            raise LegacyError("C++ driver did not answer in time") from None
        return None if line is None else line.strip()

    def cmd(self, line: str) -> bool:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if reply not in ("ok", "fail"):
            raise LegacyError(f"C++ driver answered {reply!r} to {line[:60]!r}")
        return reply == "ok"

    def frame(self, frame: Dict[int, bytes], sim_time: float, bpe: Dict[int, int]) -> bool:
        parts = [f"{sid} {len(d) // bpe[sid]} {d.hex() or '-'}" for sid, d in frame.items()]
        return self.cmd(f"frame {sim_time!r} " + " ".join(parts))

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.cmd("quit")
                self.proc.wait(timeout=10)
        except (LegacyError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if f:
                    f.close()


def test_legacy_write_static_append_read_by_us(legacy: Legacy, legacy_static_append_exe: pathlib.Path) -> None:
    """A shmx 1.0.1 producer (its C++ library) appends a stream descriptor
    and an unknown TLV to its static directory; our Client and Inspector
    pick both changes up, and read frames carrying the new stream."""
    name = legacy.name("l2o-static")
    drv = CppPeer(legacy_static_append_exe, name)
    try:
        with shmx.Client() as c, shmx.Inspector() as ins:
            assert c.open(name), c.last_error
            assert ins.open(name), ins.last_error
            base = [{"id": 1, "name": "base", "dtype": "uint8", "dtype_code": shmx.DT_U8, "components": 1,
                     "layout": "scalar", "bytes_per_elem": 1}]
            assert c.get_streams_info() == base
            gen0 = c.get_header_info()["static_gen"]
            unknown = struct.pack("<II", 0x7777, 5) + b"\x01\x02\x03\x04\x05"
            unknown += b"\0" * (align16(len(unknown)) - len(unknown))
            extra = b"\x00\xffextra"
            late = static_dir_tlv(2, "late", shmx.DT_F32, 2, 8, shmx.LAYOUT_AOS_VECTOR, extra)
            assert drv.cmd("append " + (unknown + late).hex())
            h = c.get_header_info()
            assert h["static_gen"] == gen0 + 1
            buf = raw_region(name)
            used = struct.unpack_from("<I", buf, 56)[0]
            assert used == h["static_bytes_used"] and buf[128 + used - len(late):128 + used] == late
            assert struct.unpack_from("<Q", buf, 40)[0] == layout_dump.fnv1a64(buf[128:128 + used])
            want = base + [{"id": 2, "name": "late", "dtype": "float32", "dtype_code": shmx.DT_F32,
                            "components": 2, "layout": "vector", "bytes_per_elem": 8, "extra": extra}]
            assert c.refresh_static()
            assert c.get_streams_info() == want
            assert ins.get_streams_info() == want
            rng = random.Random(9)
            frame = {1: rng.randbytes(33), 2: rng.randbytes(8 * 11)}
            assert drv.frame(frame, 4.25, {1: 1, 2: 8})
            check_frame(c.get_latest_frame(), frame, 1, 4.25, {1: "base", 2: "late"}, {1: 1, 2: 8})
            check_frame(ins.copy_latest(), frame, 1, 4.25, {1: "base", 2: "late"}, {1: 1, 2: 8})
            # Full: the legacy producer refuses, nothing changes.
            assert not drv.cmd("append " + (b"\0" * 2000).hex())
            assert c.get_header_info()["static_gen"] == gen0 + 1
    finally:
        drv.close()


# ================================================================= swapping

def test_replacing_a_legacy_server_by_ours(legacy: Legacy) -> None:
    """shmx 1.0.1 leaves its region behind, and nothing tells whether its
    owner lives: our server refuses the name (it would otherwise clobber a
    live 1.0.1 producer) until the file is removed with --force; after that,
    legacy readers read our server."""
    peer, name = legacy.peer(), legacy.name("swap")
    assert peer.call("server_create", name=name, streams=legacy_specs(STREAMS))
    legacy_publish(peer, make_frame(random.Random(10), 1), 1.0)
    peer.call("server_destroy")
    assert os.path.exists(os.path.join(SHM_DIR, name)), "shmx 1.0.1 unlinks on destroy now?"
    s = shmx.Server()
    assert not s.create(name, streams=STREAMS)
    assert "1.0.1" in s.last_error and "remove" in s.last_error
    cli = [sys.executable, "-m", "shmx", "--dir", SHM_DIR, "rm"]
    keep = subprocess.run(cli + [name], capture_output=True, text=True, timeout=60)
    assert keep.returncode != 0 and os.path.exists(os.path.join(SHM_DIR, name))
    gone = subprocess.run(cli + ["--force", name], capture_output=True, text=True, timeout=60)
    assert gone.returncode == 0, gone.stderr
    assert not os.path.exists(os.path.join(SHM_DIR, name))
    with s:
        assert s.create(name, streams=STREAMS), s.last_error
        assert peer.call("client_open", name=name)
        frame = make_frame(random.Random(11), 2)
        our_publish(s, frame, 2.0)
        check_frame(peer.call("client_latest"), frame, 1, 2.0, NAMES, BPE, hex_data=True)
        peer.call("client_close")


def test_our_client_follows_a_legacy_successor(legacy: Legacy) -> None:
    """Our server goes away and a shmx 1.0.1 server takes the name: a
    waiting Client of ours moves over to it (as it does to a new server of
    ours) and reads its frames."""
    peer, name = legacy.peer(), legacy.name("succ")
    with shmx.Server() as s, shmx.Client() as c:
        assert s.create(name, streams=STREAMS), s.last_error
        assert c.open(name)
        our_publish(s, make_frame(random.Random(12), 1), 1.0)
        assert c.get_latest_frame() is not None
        s.destroy()
        assert peer.call("server_create", name=name, streams=legacy_specs(STREAMS))
        frame = make_frame(random.Random(13), 3)
        t = threading.Timer(0.3, lambda: legacy_publish(peer, frame, 7.0))
        t.start()
        try:
            got = c.wait_frame(timeout=20)
        finally:
            t.join(timeout=30)
        check_frame(got, frame, 1, 7.0, NAMES, BPE)
        assert c.get_header_info()["extended"] is False
        peer.call("server_destroy")


# ========================================== control rings under concurrency

def burst_message(i: int) -> Any:
    """Message i of a control burst (tests/legacy_peer.py has the same)."""
    return 0x3000 + i % 256, bytes((i * 7 + j) % 256 for j in range(i % 61))


BURST = 3000


def test_concurrent_control_burst_legacy_client_to_our_server(legacy: Legacy,
                                                              unique_name: Callable[[str], str]) -> None:
    """A shmx 1.0.1 client sends while our server polls, concurrently, with
    the small ring full most of the time: nothing lost, doubled or torn."""
    name = unique_name("o2l-burst")
    peer = legacy.peer()
    with shmx.Server() as s:
        assert s.create(name, control_per_reader=256, streams=STREAMS), s.last_error
        assert peer.call("client_open", name=name)
        result: List[Any] = []
        t = threading.Thread(target=lambda: result.append(peer.call("client_send_burst", count=BURST,
                                                                    timeout=120)))
        t.start()
        got: List[Any] = []
        deadline = time.monotonic() + 90
        try:
            while len(got) < BURST and time.monotonic() < deadline:
                if s.wait_control(timeout=1.0):
                    got += [(m["type"], m["data"]) for m in s.poll_control()]
        finally:
            t.join(timeout=150)
        assert result and result[0]["sent"] == BURST, result
        assert result[0]["full"] > 0, "the ring never filled: the test did not test wrap-around under load"
        assert got == [burst_message(i) for i in range(BURST)]
        peer.call("client_close")


def test_concurrent_control_burst_our_client_to_legacy_server(legacy: Legacy) -> None:
    peer, name = legacy.peer(), legacy.name("l2o-burst")
    assert peer.call("server_create", name=name, control_per_reader=256, streams=legacy_specs(STREAMS))
    with shmx.Client() as c:
        assert c.open(name), c.last_error
        result: List[Any] = []
        t = threading.Thread(target=lambda: result.append(peer.call("server_poll_until", count=BURST,
                                                                    timeout=120)))
        t.start()
        full = 0
        deadline = time.monotonic() + 90
        try:
            for i in range(BURST):
                typ, data = burst_message(i)
                while not (c.send_control(typ, data) if data else c.send_control_empty(typ)):
                    assert "full" in c.last_error, c.last_error
                    assert time.monotonic() < deadline, f"stuck at message {i}"
                    full += 1
                    time.sleep(0.0002)
        finally:
            t.join(timeout=150)
        assert result, "the legacy server did not answer"
        assert [(m["type"], bytes.fromhex(m["data"])) for m in result[0]] == \
            [burst_message(i) for i in range(BURST)]
        assert {m["reader_id"] for m in result[0]} == {c.reader_id}
        assert full > 0
