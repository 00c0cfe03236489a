"""Write the seed corpus for the fuzz targets: small valid regions made by our
own server (tools/fuzz/corpus/region/) and the reader/control areas of a
server with queued control messages (tools/fuzz/corpus/control/).

    python tools/fuzz/make_seeds.py [OUT_DIR]      (default: tools/fuzz/corpus)

Regions are kept to a few KB (2 frame slots, tiny frames) so the fuzzer
spends its time on structure, not on bulk bytes.
"""
from __future__ import annotations

import os
import struct
import sys
import tempfile
from pathlib import Path

import shmx

HERE = Path(__file__).resolve().parent
# Must match the F_* constants of fuzz_control.c.
CONTROL_CONFIG = dict(slots=2, reader_slots=2, static_bytes_cap=256, frame_bytes_cap=64,
                      control_per_reader=128)
SMALL = dict(slots=2, reader_slots=2, static_bytes_cap=256, frame_bytes_cap=64, control_per_reader=64)
STREAMS = [shmx.create_stream_spec(1, "pixels", shmx.DT_U8, 1, 1),
           shmx.create_stream_spec(2, "pos", shmx.DT_F32, 3, 12, shmx.LAYOUT_AOS_VECTOR, extra=b"xyz")]


def region_bytes(shm_dir: str, name: str) -> bytes:
    return Path(shm_dir, name).read_bytes()


def make_regions(shm_dir: str) -> dict:
    out = {}
    s = shmx.Server()
    # 1. empty region: schema, no frame yet
    assert s.create("empty", **SMALL, streams=STREAMS, shm_dir=shm_dir), s.last_error
    out["empty"] = region_bytes(shm_dir, "empty")
    s.destroy()
    # 2. frames published, a reader holding a pin, a control message queued
    assert s.create("busy", **SMALL, streams=STREAMS, shm_dir=shm_dir), s.last_error
    c = shmx.Client()
    assert c.open("busy", shm_dir=shm_dir), c.last_error
    for i in range(3):
        s.publish({1: bytes(range(i, i + 20)), 2: struct.pack("<3f", i, 2 * i, 3 * i)}, float(i))
    assert c.get_latest_frame() is not None
    s.publish({1: b"\x07" * 5}, 9.0)
    c.send_control(shmx.TLV_CONTROL_USER, b"ping")
    out["busy"] = region_bytes(shm_dir, "busy")
    c.close()
    s.destroy()
    # 3. raw bytes appended to the static directory, checksums always on
    assert s.create("static", **SMALL, streams=STREAMS[:1], checksum="always", shm_dir=shm_dir)
    s.write_static_append(b"\x00\x10\x00\x00\x08\x00\x00\x00rawbytes")
    s.publish({1: b"abc"}, 1.5)
    out["static"] = region_bytes(shm_dir, "static")
    s.destroy()
    # 4. the same region as a shmx 1.0.1 producer would leave it: no extension
    legacy = bytearray(out["static"])
    legacy[128:256] = bytes(128)
    out["legacy"] = bytes(legacy)
    return out


def make_control(shm_dir: str) -> dict:
    out = {}
    for label, sizes in (("one", [4]), ("several", [0, 1, 17, 30]), ("wrap", [40, 40, 40, 10, 30])):
        s = shmx.Server()
        assert s.create("ctl", **CONTROL_CONFIG, streams=STREAMS[:1], shm_dir=shm_dir), s.last_error
        c = shmx.Client()
        assert c.open("ctl", shm_dir=shm_dir)
        for k, n in enumerate(sizes):
            assert c.send_control(shmx.TLV_CONTROL_USER + k, bytes([k]) * n), c.last_error
            if label == "wrap" and k < 3:
                s.poll_control()  # move the ring on so later messages wrap
        s.publish({1: b"x"}, 0.0)
        assert c.get_latest_frame() is not None  # a pin in the slot headers
        raw = region_bytes(shm_dir, "ctl")
        h = s.get_header_info()
        gh = struct.unpack_from("<16I", raw, 48)  # static_offset .. control_stride
        readers_off, slots_off, stride = gh[9], gh[5], gh[4]
        seqpins = b"".join(raw[slots_off + i * stride + 40:slots_off + i * stride + 56]
                           for i in range(h["slots"]))
        out[label] = raw[readers_off:slots_off] + seqpins
        c.close()
        s.destroy()
    return out


def main() -> int:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"
    with tempfile.TemporaryDirectory(prefix="shmxseed-") as tmp:
        for sub, made in (("region", make_regions(tmp)), ("control", make_control(tmp))):
            d = dest / sub
            d.mkdir(parents=True, exist_ok=True)
            for label, data in made.items():
                (d / f"{label}.bin").write_bytes(data)
                print(f"{d / label}.bin: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
