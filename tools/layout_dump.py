#!/usr/bin/env python3
"""Dump a shmx region straight from its bytes (a debugging aid).

Reads the raw file (``/dev/shm/NAME``, ``$SHMX_DIR/NAME`` or a path) and
decodes it with ``struct`` at the offsets of layout v2.0 (docs/design.md,
section 3), without the shmx library: the global header, our extension
block (when its magic is there), the static directory, reader slots,
control ring counters and every frame slot's header with its streams and
a checksum check.  Works on regions of shmx 1.0.1 servers too.

    python tools/layout_dump.py NAME                # text
    python tools/layout_dump.py NAME --json         # machine-readable
    python tools/layout_dump.py ./copy.bin --all    # every reader slot, even free ones
    python tools/layout_dump.py NAME --hex 32       # first bytes of each stream

Every offset and length read from the file is checked against its size,
so a corrupt file yields ``"errors"`` entries, not a crash.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from typing import Any, Dict, List, Optional, Tuple

MAGIC = 0x48494E415F53484D
EXT_MAGIC = 0x31545845584D4853  # "SHMXEXT1"
READER_MARK = 0x584D4853        # "SHMX" in ReaderSlot.pad (our readers)
EXT_OFFSET = 128
TLV_STATIC_DIR = 0x1000
TLV_FRAME_STREAM = 0x2000
FRAME_HEADER_BYTES = 64
CHECKSUM_POLICIES = {0: "auto", 1: "always", 2: "never"}
DTYPES = {1: "bool", 2: "int8", 3: "uint8", 4: "int16", 5: "uint16", 6: "int32", 7: "uint32",
          8: "int64", 9: "uint64", 10: "float16", 11: "bfloat16", 12: "float32", 13: "float64"}

# (field, struct code, offset): layout v2.0, shared with shmx 1.0.1.
GLOBAL_HEADER: List[Tuple[str, str, int]] = [
    ("magic", "Q", 0), ("ver_major", "I", 8), ("ver_minor", "I", 12), ("endianness", "I", 16),
    ("session_id", "Q", 24), ("static_gen", "I", 32), ("static_hash", "Q", 40),
    ("static_offset", "I", 48), ("static_bytes_cap", "I", 52), ("static_bytes_used", "I", 56),
    ("slots", "I", 60), ("slot_stride", "I", 64), ("slots_offset", "I", 68),
    ("frame_bytes_cap", "I", 72), ("reader_slots", "I", 76), ("reader_slot_stride", "I", 80),
    ("readers_offset", "I", 84), ("control_offset", "I", 88), ("control_per_reader", "I", 92),
    ("control_stride", "I", 96), ("frame_seq", "Q", 104), ("write_index", "I", 112),
    ("readers_connected", "I", 116), ("reserve_index", "I", 120),
]
# Our extension block, at offset 128 of our regions (absolute offsets).
EXTENSION: List[Tuple[str, str, int]] = [
    ("magic", "Q", 128), ("version", "I", 136), ("size", "I", 140), ("owner_pid", "Q", 144),
    ("owner_start", "Q", 152), ("owner_heartbeat", "Q", 160), ("closed", "I", 168),
    ("checksum_policy", "I", 172), ("frame_futex", "I", 176), ("control_waiters", "I", 180),
    ("user_frame_cap", "I", 184), ("frame_waiters", "I", 192), ("control_futex", "I", 196),
    ("overruns", "Q", 200),
]
# Offsets relative to the start of a frame slot / reader slot.
FRAME_HEADER: List[Tuple[str, str, int]] = [
    ("session_id_copy", "Q", 0), ("frame_id", "Q", 8), ("sim_time", "d", 16),
    ("payload_bytes", "I", 24), ("tlv_count", "I", 28), ("checksum", "I", 32),
    ("seq", "Q", 40), ("pins", "Q", 48),  # reserved[0], reserved[1]: ours
]
READER_SLOT: List[Tuple[str, str, int]] = [
    ("reader_id", "Q", 0), ("heartbeat", "Q", 8), ("last_frame_seen", "Q", 16),
    ("in_use", "I", 24), ("mark", "I", 28), ("pid", "Q", 32), ("frames_read", "Q", 40),
    ("frames_dropped", "Q", 48), ("pid_start", "Q", 56),  # from pid on: reserved[4], ours
]


def fnv1a64(data: bytes) -> int:
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def checksum32(data: bytes) -> int:
    """The shmx 1.0.1 frame checksum: FNV-1a 64 folded hi ^ lo."""
    h = fnv1a64(data)
    return (h >> 32) ^ (h & 0xFFFFFFFF)


def unpack_fields(buf: bytes, fields: List[Tuple[str, str, int]], base: int = 0) -> Dict[str, Any]:
    """Read ``fields`` at ``base``; fields past the end of ``buf`` are skipped."""
    out: Dict[str, Any] = {}
    for name, code, off in fields:
        at = base + off
        if at + struct.calcsize(code) <= len(buf):
            out[name] = struct.unpack_from("<" + code, buf, at)[0]
    return out


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def _tlvs(buf: bytes, start: int, end: int, errors: List[str], where: str) -> List[Tuple[int, int, int]]:
    """(type, body offset, body length) of each TLV in [start, end)."""
    out = []
    off = start
    end = min(end, len(buf))
    while off + 8 <= end:
        typ, length = struct.unpack_from("<II", buf, off)
        if off + 8 + length > end:
            if typ != 0 or length > end - off:
                errors.append(f"{where}: TLV 0x{typ:x} at {off} claims {length} bytes, {end - off - 8} left")
            break
        out.append((typ, off + 8, length))
        off += _align(8 + length, 16)
    return out


def parse(buf: bytes, hex_bytes: int = 0) -> Dict[str, Any]:
    """Decode a whole region image into plain dicts (see the module doc)."""
    errors: List[str] = []
    rep: Dict[str, Any] = {"file_bytes": len(buf), "errors": errors}
    if len(buf) < 128:
        errors.append(f"file is {len(buf)} bytes, smaller than the 128-byte header")
        return rep
    gh = unpack_fields(buf, GLOBAL_HEADER)
    rep["header"] = gh
    if gh["magic"] != MAGIC:
        errors.append(f"magic 0x{gh['magic']:016x} is not shmx's 0x{MAGIC:016x}")
        return rep
    if gh["endianness"] != 0x01020304:
        errors.append(f"endianness tag 0x{gh['endianness']:08x}")
    expected = gh["slots_offset"] + gh["slots"] * gh["slot_stride"]
    rep["expected_bytes"] = expected
    if expected > len(buf):
        errors.append(f"header describes {expected} bytes, the file has {len(buf)}")

    ext = None
    if gh["static_offset"] >= 256 and len(buf) >= 256:
        cand = unpack_fields(buf, EXTENSION)
        if cand.get("magic") == EXT_MAGIC:
            ext = cand
            ext["checksum_policy_name"] = CHECKSUM_POLICIES.get(ext["checksum_policy"], "?")
    rep["extension"] = ext
    rep["kind"] = "shmx (extended)" if ext else "shmx 1.0.1 (legacy layout)"

    # Static directory.
    streams: List[Dict[str, Any]] = []
    s0, used = gh["static_offset"], gh["static_bytes_used"]
    if used > gh["static_bytes_cap"]:
        errors.append(f"static_bytes_used {used} > static_bytes_cap {gh['static_bytes_cap']}")
    raw_static = buf[s0:s0 + used]
    rep["static"] = {"offset": s0, "used": used, "cap": gh["static_bytes_cap"],
                     "hash_ok": fnv1a64(raw_static) == gh["static_hash"] if used else None,
                     "entries": streams}
    for typ, body, length in _tlvs(buf, s0, s0 + used, errors, "static directory"):
        if typ != TLV_STATIC_DIR:
            streams.append({"tlv_type": typ, "length": length})
            continue
        if length < 32:
            errors.append(f"static entry at {body - 8} is {length} bytes (< 32)")
            continue
        (sid, et, comp, lay, bpe, _res, nl, xl) = struct.unpack_from("<8I", buf, body)
        if 32 + nl + xl > length:
            errors.append(f"static entry {sid}: name+extra {nl}+{xl} exceed its {length}-byte TLV")
            continue
        name = buf[body + 32:body + 32 + nl].decode("utf-8", "replace")
        extra = buf[body + 32 + nl:body + 32 + nl + xl]
        streams.append({"stream_id": sid, "name": name, "dtype": DTYPES.get(et, f"?{et}"),
                        "dtype_code": et, "components": comp, "layout": lay,
                        "bytes_per_elem": bpe, "extra_hex": extra.hex()})

    # Reader slots.
    readers = []
    for i in range(min(gh["reader_slots"], 4096)):
        at = gh["readers_offset"] + i * gh["reader_slot_stride"]
        if at + 64 > len(buf):
            errors.append(f"reader slot {i} at {at} is outside the file")
            break
        rs = unpack_fields(buf, READER_SLOT, at)
        rs["index"] = i
        rs["ours"] = rs["mark"] == READER_MARK
        readers.append(rs)
    rep["readers"] = readers

    # Control rings: only the counters.
    rings = []
    if gh["control_per_reader"]:
        for i in range(min(gh["reader_slots"], 4096)):
            at = gh["control_offset"] + i * gh["control_stride"]
            if at + 16 > len(buf):
                errors.append(f"control ring {i} at {at} is outside the file")
                break
            rd, wr = struct.unpack_from("<QQ", buf, at)
            rings.append({"index": i, "read": rd, "write": wr, "unread": (wr - rd) & 0xFFFFFFFFFFFFFFFF})
    rep["control"] = rings

    # Frame slots.
    frames = []
    w = gh["write_index"]
    latest = (w - 1) % gh["slots"] if w and gh["slots"] else None
    for s in range(min(gh["slots"], 65536)):
        at = gh["slots_offset"] + s * gh["slot_stride"]
        if at + FRAME_HEADER_BYTES > len(buf):
            errors.append(f"frame slot {s} at {at} is outside the file")
            break
        fh = unpack_fields(buf, FRAME_HEADER, at)
        fh["slot"] = s
        fh["latest"] = s == latest
        fh["session_ok"] = fh["session_id_copy"] == gh["session_id"]
        n = fh["payload_bytes"]
        p0 = at + FRAME_HEADER_BYTES
        if n > gh["frame_bytes_cap"] or p0 + n > len(buf):
            errors.append(f"slot {s}: payload_bytes {n} exceeds frame_bytes_cap {gh['frame_bytes_cap']}")
            frames.append(fh)
            continue
        payload = buf[p0:p0 + n]
        fh["checksum_calc"] = checksum32(payload)
        # An empty slot (never written) has no meaningful checksum.
        fh["checksum_ok"] = (fh["checksum_calc"] == fh["checksum"]) if n else None
        fh["streams"] = []
        for typ, body, length in _tlvs(buf, p0, p0 + n, errors, f"slot {s}"):
            if typ != TLV_FRAME_STREAM or length < 16:
                fh["streams"].append({"tlv_type": typ, "length": length})
                continue
            sid, count, nbytes, _r = struct.unpack_from("<4I", buf, body)
            entry = {"stream_id": sid, "elem_count": count, "bytes": nbytes}
            if nbytes > length - 16:
                errors.append(f"slot {s}: stream {sid} claims {nbytes} bytes in a {length}-byte TLV")
            elif hex_bytes:
                entry["head_hex"] = buf[body + 16:body + 16 + min(nbytes, hex_bytes)].hex()
            fh["streams"].append(entry)
        frames.append(fh)
    rep["frames"] = frames
    return rep


def region_path(name_or_path: str) -> str:
    """A path as given, or NAME in $SHMX_DIR (default /dev/shm)."""
    if os.sep in name_or_path or os.path.exists(name_or_path):
        return name_or_path
    return os.path.join(os.environ.get("SHMX_DIR") or "/dev/shm", name_or_path.lstrip("/"))


def _fmt(d: Dict[str, Any], keys: Optional[List[str]] = None) -> str:
    items = [(k, d[k]) for k in (keys or list(d)) if k in d]
    parts = []
    for k, v in items:
        if isinstance(v, int) and not isinstance(v, bool) and k in ("magic", "session_id", "session_id_copy",
                                                                   "static_hash", "mark", "endianness"):
            parts.append(f"{k}=0x{v:x}")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


def render(rep: Dict[str, Any], show_all: bool = False) -> str:
    lines = [f"file: {rep['file_bytes']} bytes ({rep.get('kind', 'not a shmx region')})"]
    gh = rep.get("header")
    if gh:
        lines.append("global header @0:")
        for name, _code, off in GLOBAL_HEADER:
            if name in gh:
                v = gh[name]
                shown = f"0x{v:x}" if name in ("magic", "session_id", "static_hash", "endianness") else v
                lines.append(f"  @{off:<4} {name:<20} {shown}")
    ext = rep.get("extension")
    if ext:
        lines.append("extension @128:")
        for name, _code, off in EXTENSION:
            if name in ext:
                v = ext[name]
                shown = f"0x{v:x}" if name == "magic" else v
                if name == "checksum_policy":
                    shown = f"{v} ({ext['checksum_policy_name']})"
                lines.append(f"  @{off:<4} {name:<20} {shown}")
    st = rep.get("static")
    if st:
        lines.append(f"static directory @{st['offset']}: {st['used']}/{st['cap']} bytes, hash_ok={st['hash_ok']}")
        for e in st["entries"]:
            lines.append("  " + _fmt(e))
    if rep.get("readers") is not None:
        used = [r for r in rep["readers"] if show_all or r["in_use"]]
        lines.append(f"reader slots: {len(rep['readers'])} ({sum(1 for r in rep['readers'] if r['in_use'])} in use)")
        for r in used:
            lines.append("  " + _fmt(r, ["index", "in_use", "ours", "reader_id", "heartbeat", "last_frame_seen",
                                         "mark", "pid", "frames_read", "frames_dropped"]))
    rings = [c for c in rep.get("control") or [] if show_all or c["unread"] or c["write"]]
    if rings:
        lines.append("control rings (read/write counters):")
        for c in rings:
            lines.append("  " + _fmt(c))
    for fh in rep.get("frames") or []:
        lines.append(f"frame slot {fh['slot']}{' (latest)' if fh['latest'] else ''}: " +
                     _fmt(fh, ["frame_id", "sim_time", "payload_bytes", "tlv_count", "checksum",
                               "checksum_ok", "seq", "pins", "session_ok"]))
        for s in fh.get("streams", []):
            lines.append("    " + _fmt(s))
    for err in rep.get("errors", []):
        lines.append(f"ERROR: {err}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Dump a shmx region's raw layout.")
    ap.add_argument("region", help="region name (in $SHMX_DIR or /dev/shm) or a file path")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--all", action="store_true", help="show free reader slots and idle rings too")
    ap.add_argument("--hex", type=int, default=0, metavar="N", help="show the first N bytes of each stream")
    args = ap.parse_args(argv)
    path = region_path(args.region)
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return 2
    rep = parse(buf, args.hex)
    rep["path"] = path
    print(json.dumps(rep, indent=2) if args.json else render(rep, args.all))
    return 1 if rep["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
