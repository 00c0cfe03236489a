"""The small C/Python additions a mirror region needs (shmx bridge):
publish with a given frame id, create with a raw static directory, copy a
region's static directory, close without removing the name."""
from __future__ import annotations

import os
import struct

import shmx

SHM_DIR = os.environ.get("SHMX_DIR") or "/dev/shm"
SPECS = [shmx.create_stream_spec(1, "a", shmx.DT_U8, 1, 1),
         shmx.create_stream_spec(2, "pos", shmx.DT_F32, 3, 12, extra=b"meta")]


def test_publish_frame_as_keeps_ids_and_gaps(name: str) -> None:
    with shmx.serve(name, SPECS, slots=8) as server, shmx.connect(name) as client:
        for fid in (5, 6, 9, 20):
            h = server.begin_frame()
            assert server.append_stream(h, 1, bytes([fid]), 1)
            assert server.publish_frame_as(h, fid / 2, fid), server.last_error
        first = client.read_next()
        assert first["__metadata__"]["frame_id"] == 20  # first read_next: the latest
        # a new reader in order from the start sees the gaps as drops
    with shmx.serve(name, SPECS, slots=8) as server, shmx.connect(name) as client:
        h = server.begin_frame()
        server.append_stream(h, 1, b"\x01", 1)
        assert server.publish_frame_as(h, 0.5, 3)
        assert client.read_next()["__metadata__"]["frame_id"] == 3
        got = []
        for fid in (4, 7, 8, 12):
            h = server.begin_frame()
            server.append_stream(h, 1, bytes([fid]), 1)
            assert server.publish_frame_as(h, fid / 2, fid)
            f = client.read_next()
            md = f["__metadata__"]
            got.append((md["frame_id"], md["dropped"], md["sim_time"], bytes(f["a"]["data"])))
        assert got == [(4, 0, 2.0, b"\x04"), (7, 2, 3.5, b"\x07"), (8, 0, 4.0, b"\x08"),
                       (12, 3, 6.0, b"\x0c")]
        # an id not after the last one is refused, and the frame stays open
        h = server.begin_frame()
        server.append_stream(h, 1, b"\x00", 1)
        assert not server.publish_frame_as(h, 0.0, 12)
        assert "not after the last published frame 12" in server.last_error
        assert server.publish_frame(h, 1.0)  # the plain publish goes on from there
        assert client.read_next()["__metadata__"]["frame_id"] == 13
        assert not server.publish_frame_as("nope", 0.0, 99)
        assert "frame handle" in server.last_error


def test_create_with_static_directory_copies_the_schema_bytes(unique_name) -> None:
    src_name, mirror_name = unique_name("src"), unique_name("mir")
    with shmx.serve(src_name, SPECS, frame_bytes_cap=4096 + 120) as src, shmx.connect(src_name) as sc:
        extra = [shmx.create_stream_spec(3, "late", shmx.DT_U16, 1, 2)]
        # a stream descriptor appended later, then raw bytes of no stream
        with shmx.serve(unique_name("tmp"), extra) as tmp, shmx.connect(tmp.name) as tc:
            late = tc.get_static_bytes()
        assert src.write_static_append(late) and src.write_static_append(b"\x07" * 16)
        raw = sc.get_static_bytes()
        assert len(raw) == sc.get_header_info()["static_bytes_used"] > len(late)
        mirror = shmx.Server()
        assert mirror.create(mirror_name, frame_bytes_cap=4096 + 120, static_directory=raw), mirror.last_error
        try:
            with shmx.connect(mirror_name) as mc:
                assert mc.get_static_bytes() == raw
                # framing room for every stream descriptor in it: the mirror's
                # slot holds whatever the source's holds
                assert mc.get_header_info()["slot_payload_cap"] >= sc.get_header_info()["slot_payload_cap"]
                sc.refresh_static()
                assert mc.get_streams_info() == sc.get_streams_info()
                assert [s["name"] for s in mc.get_streams_info()] == ["a", "pos", "late"]
            mirror.publish({"late": struct.pack("<H", 7)})
            mirror.publish({"a": b"z" * 4096, "pos": b"\0" * 12 * 10})  # frame_bytes_cap of data
        finally:
            mirror.destroy()
        bad = shmx.Server()
        assert not bad.create(mirror_name, streams=SPECS, static_directory=raw)
        assert "not both" in bad.last_error
        assert not bad.create(mirror_name, static_bytes_cap=64, static_directory=raw)
        assert "static_bytes_cap" in bad.last_error
        assert not bad.create(mirror_name, static_directory=12)
        assert "static_directory" in bad.last_error


def test_destroy_keeping_the_name(name: str) -> None:
    server = shmx.serve(name, SPECS)
    client = shmx.connect(name)
    server.publish({"a": b"x"})
    assert client.get_latest_frame() is not None
    server.destroy(unlink=False)
    assert os.path.exists(os.path.join(SHM_DIR, name))
    assert client.server_alive() is False
    assert client.wait_frame(0.2) is None and "gone" in client.last_error
    with shmx.Inspector() as insp:
        assert insp.open(name)
        h = insp.get_header_info()
        assert h["closed"] and h["owner_alive"] is False
    # a new server reclaims the name, and the waiting client follows it
    again = shmx.serve(name, SPECS)
    try:
        again.publish({"a": b"y"})
        f = client.wait_frame(5.0)
        assert f is not None and bytes(f["a"]["data"]) == b"y"
    finally:
        client.close()
        again.destroy()
    assert not os.path.exists(os.path.join(SHM_DIR, name))
