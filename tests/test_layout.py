"""The wire format at the offsets docs/design.md section 3 documents.

Each field is read with struct.unpack from the region's raw file and
compared with what the library reports; the offsets are written out here
from the document, independently of csrc/layout.h and tools/layout_dump.py
(which is checked against them too).
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import struct
import subprocess
import sys
from typing import Any, Dict

import shmx
from shmx._shmx import ffi, lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHM_DIR = os.environ.get("SHMX_DIR") or "/dev/shm"

# docs/design.md §3.2: GlobalHeader, 128 bytes at 0.
HEADER_OFFSETS = {
    "magic": ("Q", 0), "ver_major": ("I", 8), "ver_minor": ("I", 12), "endianness": ("I", 16),
    "session_id": ("Q", 24), "static_gen": ("I", 32), "static_hash": ("Q", 40),
    "static_offset": ("I", 48), "static_bytes_cap": ("I", 52), "static_bytes_used": ("I", 56),
    "slots": ("I", 60), "slot_stride": ("I", 64), "slots_offset": ("I", 68),
    "frame_bytes_cap": ("I", 72), "reader_slots": ("I", 76), "reader_slot_stride": ("I", 80),
    "readers_offset": ("I", 84), "control_offset": ("I", 88), "control_per_reader": ("I", 92),
    "control_stride": ("I", 96), "frame_seq": ("Q", 104), "write_index": ("I", 112),
    "readers_connected": ("I", 116), "reserve_index": ("I", 120),
}
FRAME_OFFSETS = {"session_id_copy": ("Q", 0), "frame_id": ("Q", 8), "sim_time": ("d", 16),
                 "payload_bytes": ("I", 24), "tlv_count": ("I", 28), "checksum": ("I", 32),
                 "seq": ("Q", 40), "pins": ("Q", 48)}
READER_OFFSETS = {"reader_id": ("Q", 0), "heartbeat": ("Q", 8), "last_frame_seen": ("Q", 16),
                  "in_use": ("I", 24), "mark": ("I", 28), "pid": ("Q", 32)}

STREAMS = [shmx.create_stream_spec(4, "xyz", shmx.DT_F32, 3, 12, shmx.LAYOUT_AOS_VECTOR, b"meta"),
           shmx.create_stream_spec(5, "n", shmx.DT_U32, 1, 4)]


def _load_tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"_shmx_tools_{name}", ROOT / "tools" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fields(buf: bytes, table: Dict[str, Any], base: int = 0) -> Dict[str, Any]:
    return {k: struct.unpack_from("<" + code, buf, base + off)[0] for k, (code, off) in table.items()}


def fnv1a64(data: bytes) -> int:
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def checksum32(data: bytes) -> int:
    h = fnv1a64(data)
    return (h >> 32) ^ (h & 0xFFFFFFFF)


def align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def raw(name: str) -> bytes:
    with open(os.path.join(SHM_DIR, name), "rb") as f:
        return f.read()


def test_header_fields_at_documented_offsets(name: str) -> None:
    with shmx.Server() as s, shmx.Client() as c:
        assert s.create(name, slots=5, reader_slots=7, static_bytes_cap=1000, frame_bytes_cap=3000,
                        control_per_reader=300, streams=STREAMS, checksum="always"), s.last_error
        assert c.open(name), c.last_error
        for k in range(7):  # more frames than slots
            s.publish({4: struct.pack("<3f", k, k + 0.5, -k), 5: struct.pack("<I", k)}, k / 4)
        buf = raw(name)
        h = fields(buf, HEADER_OFFSETS)
        info = s.get_header_info()
        assert info == c.get_header_info() | {"name": info["name"]}
        assert h["magic"] == info["magic"] == 0x48494E415F53484D
        assert (h["ver_major"], h["ver_minor"]) == (info["version_major"], info["version_minor"]) == (2, 0)
        assert h["endianness"] == 0x01020304
        for key in ("session_id", "static_gen", "static_bytes_used", "static_bytes_cap", "slots", "reader_slots",
                    "control_per_reader", "frame_seq", "readers_connected"):
            assert h[key] == info[key], key
        assert h["frame_bytes_cap"] == info["slot_payload_cap"] >= info["frame_bytes_cap"] == 3000
        assert h["frame_seq"] == 7 and h["readers_connected"] == 1 and h["slots"] == 5
        # Areas in the documented order, each 64-aligned, sizes as documented.
        assert h["static_offset"] >= 256  # room for our extension block at 128
        assert h["static_offset"] < h["readers_offset"] < h["control_offset"] < h["slots_offset"]
        for key in ("static_offset", "readers_offset", "control_offset", "slots_offset"):
            assert h[key] % 64 == 0, key
        assert h["readers_offset"] >= h["static_offset"] + h["static_bytes_cap"]
        assert h["reader_slot_stride"] == 64
        assert h["control_offset"] >= h["readers_offset"] + 7 * 64
        assert h["control_stride"] == align(h["control_per_reader"], 64)
        assert h["slots_offset"] >= h["control_offset"] + 7 * h["control_stride"]
        assert h["slot_stride"] == 64 + align(h["frame_bytes_cap"], 64)
        assert len(buf) == h["slots_offset"] + 5 * h["slot_stride"] == info["total_bytes"]
        assert h["write_index"] != 0
        static = buf[h["static_offset"]:h["static_offset"] + h["static_bytes_used"]]
        assert h["static_hash"] == fnv1a64(static)
        # The C call the recorder uses (Python keeps no copy of the hash).
        assert lib.shmx_static_hash(static, len(static)) == h["static_hash"] != lib.shmx_static_hash(b"x", 1)
        assert lib.shmx_static_hash(ffi.NULL, 0) == lib.shmx_static_hash(b"", 0)

        # Static directory: TLVs {type, length} padded to 16, documented body.
        off, end = h["static_offset"], h["static_offset"] + h["static_bytes_used"]
        entries = []
        while off < end:
            typ, length = struct.unpack_from("<II", buf, off)
            assert typ == 0x1000
            sid, et, comp, lay, bpe, res, nl, xl = struct.unpack_from("<8I", buf, off + 8)
            nm = buf[off + 40:off + 40 + nl].decode()
            extra = buf[off + 40 + nl:off + 40 + nl + xl]
            assert length == 32 + nl + xl and res == 0
            entries.append({"id": sid, "name": nm, "dtype_code": et, "components": comp,
                            "layout": shmx.layout_to_string(lay), "bytes_per_elem": bpe, "extra": extra})
            off += align(8 + length, 16)
        assert off == end
        mine = [{k: d.get(k, b"") for k in ("id", "name", "dtype_code", "components", "layout",
                                             "bytes_per_elem", "extra")} for d in s.get_streams_info()]
        assert entries == mine

        # The latest frame header and payload.
        frame = c.get_latest_frame()
        assert frame is not None
        buf = raw(name)  # after the read: it pinned the slot
        slot = (h["write_index"] - 1) % h["slots"]
        at = h["slots_offset"] + slot * h["slot_stride"]
        fh = fields(buf, FRAME_OFFSETS, at)
        meta = frame["__metadata__"]
        assert fh["session_id_copy"] == h["session_id"]
        assert (fh["frame_id"], fh["sim_time"], fh["payload_bytes"], fh["tlv_count"]) == \
            (meta["frame_id"], meta["sim_time"], meta["payload_bytes"], meta["tlv_count"]) == (7, 1.5, 48 + 32, 2)
        payload = buf[at + 64:at + 64 + fh["payload_bytes"]]
        assert fh["checksum"] == checksum32(payload)  # checksum="always"
        assert fh["seq"] % 2 == 0 and fh["seq"] > 0  # our seqlock, even: stable
        reader_index = next(r["index"] for r in s.snapshot_readers() if r["in_use"])
        assert fh["pins"] == 1 << reader_index  # the frame we hold is pinned by our reader slot
        p = 0
        for sid in (4, 5):
            typ, length = struct.unpack_from("<II", payload, p)
            fsid, count, nbytes, res = struct.unpack_from("<4I", payload, p + 8)
            assert (typ, fsid, res) == (0x2000, sid, 0) and length == 16 + nbytes
            assert payload[p + 24:p + 24 + nbytes] == bytes(frame[{4: "xyz", 5: "n"}[sid]]["data"])
            p += align(8 + length, 16)
        assert p == fh["payload_bytes"]

        # Our extension block at 128.
        ext_magic, ext_version = struct.unpack_from("<QI", buf, 128)
        assert ext_magic == 0x31545845584D4853  # "SHMXEXT1"
        assert ext_version >= 1
        owner_pid, = struct.unpack_from("<Q", buf, 144)
        assert owner_pid == os.getpid() == info["owner_pid"]
        closed, policy = struct.unpack_from("<II", buf, 168)
        assert (closed, policy) == (0, 1)  # open; ALWAYS

        # Our reader's slot: id, last frame, in_use, our mark at 28, pid.
        rs = fields(buf, READER_OFFSETS, h["readers_offset"] + reader_index * 64)
        assert rs["reader_id"] == c.reader_id
        assert rs["in_use"] == 1 and rs["last_frame_seen"] == 7
        assert rs["mark"] == 0x584D4853  # "SHMX": not a legacy reader
        assert rs["pid"] == os.getpid()

        # Control ring of that reader slot: read/write at 0/8, TLV at 16.
        assert c.send_control(0x3001, b"hello control")
        buf = raw(name)
        ring = h["control_offset"] + reader_index * h["control_stride"]
        rd, wr = struct.unpack_from("<QQ", buf, ring)
        assert (rd, wr) == (0, align(8 + 13, 16))
        assert struct.unpack_from("<II", buf, ring + 16) == (0x3001, 13)
        assert buf[ring + 24:ring + 24 + 13] == b"hello control"
        assert [(m["type"], m["data"]) for m in s.poll_control()] == [(0x3001, b"hello control")]
        rd, wr = struct.unpack_from("<QQ", raw(name), ring)
        assert rd == wr


def test_checksum_is_zero_without_legacy_readers(name: str) -> None:
    """checksum="auto" (the default) with only our readers: no checksum."""
    with shmx.Server() as s, shmx.Client() as c:
        assert s.create(name, streams=STREAMS), s.last_error
        assert c.open(name)
        s.publish({5: b"\x01\x02\x03\x04"})
        buf = raw(name)
        w, = struct.unpack_from("<I", buf, 112)
        slots, stride, off = struct.unpack_from("<III", buf, 60)
        at = off + ((w - 1) % slots) * stride
        assert struct.unpack_from("<I", buf, at + 32)[0] == 0
        assert struct.unpack_from("<I", buf, 172)[0] == 0  # policy AUTO in the extension


def test_layout_dump_agrees(name: str) -> None:
    dump = _load_tool("layout_dump")
    with shmx.Server() as s, shmx.Client() as c:
        assert s.create(name, slots=3, streams=STREAMS, checksum="always"), s.last_error
        assert c.open(name)
        s.publish({4: bytes(24), 5: b"abcd"}, 2.5)
        assert c.send_control(0x3002, b"x")
        out = subprocess.run([sys.executable, str(ROOT / "tools" / "layout_dump.py"), name, "--json", "--hex", "4"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr + out.stdout
        rep = json.loads(out.stdout)
        assert rep["errors"] == []
        buf = raw(name)
        assert rep["header"] == {k: struct.unpack_from("<" + code, buf, off)[0]
                                 for k, (code, off) in HEADER_OFFSETS.items()}
        assert rep["kind"].startswith("shmx (extended)")
        assert rep["extension"]["owner_pid"] == os.getpid()
        assert rep["extension"]["checksum_policy_name"] == "always"
        assert [e["name"] for e in rep["static"]["entries"]] == ["xyz", "n"] and rep["static"]["hash_ok"]
        mine = [r for r in rep["readers"] if r["in_use"]]
        assert len(mine) == 1 and mine[0]["ours"] and mine[0]["reader_id"] == c.reader_id
        assert [r["unread"] for r in rep["control"] if r["unread"]] == [16]
        latest = [f for f in rep["frames"] if f["latest"]]
        assert len(latest) == 1
        f = latest[0]
        assert (f["frame_id"], f["sim_time"], f["checksum_ok"]) == (1, 2.5, True)
        assert f["streams"] == [{"stream_id": 4, "elem_count": 2, "bytes": 24, "head_hex": "00000000"},
                                {"stream_id": 5, "elem_count": 1, "bytes": 4, "head_hex": "61626364"}]
        text = subprocess.run([sys.executable, str(ROOT / "tools" / "layout_dump.py"), name],
                              capture_output=True, text=True, timeout=60)
        assert text.returncode == 0 and "@104  frame_seq" in text.stdout and "extension @128" in text.stdout
        assert dump.parse(b"\0" * 64)["errors"]  # too small: an error, not a crash
        s.poll_control()
