"""Shaped streams, schema checks, one behaviour per situation, and messages
that name the user's call and argument (issue #16)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import shmx
from _helpers import Child

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ shapes
def image_streams():
    return [shmx.create_stream_spec(1, "img", shmx.DT_U8, 3, 3, shape=(4, 5, 3), extra=b"cam0"),
            shmx.create_stream_spec(2, "depth", shmx.DT_F32, 1, 4, shape=(4, 5)),
            shmx.create_stream_spec(3, "flat", shmx.DT_F32, 3, 12)]


def test_shape_reaches_readers_in_another_process_and_arrays_use_it(name: str) -> None:
    np = pytest.importorskip("numpy")
    with shmx.serve(name, image_streams()) as srv:
        child = Child("""
            import json, sys, shmx
            c = shmx.connect(sys.argv[1], timeout=10)
            info = {s["name"]: [s.get("shape"), s.get("extra", b"").decode()] for s in c.get_streams_info()}
            print("info", json.dumps(info), flush=True)
            f = c.wait_frame(10)
            arrs = c.as_arrays(f)
            print("arrays", json.dumps({k: [list(v.shape), v.dtype.str, v.ravel().tolist()[:4]]
                                        for k, v in arrs.items()}), flush=True)
            c.close()
        """, name)
        info = json.loads(child.wait_for("info").split(" ", 1)[1])
        assert info == {"img": [[4, 5, 3], "cam0"], "depth": [[4, 5], ""], "flat": [None, ""]}
        srv.publish({1: bytes(range(60)), 2: np.arange(20, dtype=np.float32),
                     3: np.zeros(6, np.float32)})
        arrays = json.loads(child.wait_for("arrays").split(" ", 1)[1])
        assert child.proc.wait(30) == 0
    assert arrays["img"] == [[4, 5, 3], "|u1", [0, 1, 2, 3]]
    assert arrays["depth"] == [[4, 5], "<f4", [0.0, 1.0, 2.0, 3.0]]
    assert arrays["flat"][0] == [2, 3]
    assert "__metadata__" not in arrays  # as_arrays: arrays only


def test_a_frame_that_does_not_fit_the_shape_comes_back_flat(name: str) -> None:
    pytest.importorskip("numpy")
    with shmx.serve(name, image_streams()) as srv, shmx.connect(name) as c:
        srv.publish_stream(1, bytes(30))  # 10 pixels, not 4x5
        assert c.get_latest_arrays()["img"].shape == (10, 3)
        srv.publish_stream(1, bytes(60))
        arr = c.get_latest_arrays()["img"]
        assert arr.shape == (4, 5, 3) and not arr.flags.writeable


def test_shape_is_stored_in_extra_with_a_tag(name: str) -> None:
    from shmx._shape import MAGIC, decode_shape, encode_shape
    raw = encode_shape((480, 640, 3), b"user")
    assert raw.startswith(MAGIC) and raw.endswith(b"user")
    assert decode_shape(raw) == ((480, 640, 3), b"user")
    # Anything that is not exactly our tag is someone's own extra, kept as is.
    for other in (b"", b"w=640", MAGIC, MAGIC + b"\x02\x01\x00\x00" + b"\x01\x00\x00\x00",
                  MAGIC + b"\x01\x02\x00\x00" + b"\x01\x00\x00\x00"):
        assert decode_shape(other) == (None, other)
    # The region's static directory holds the tagged bytes: a shmx 1.0.1
    # peer parses the same TLVs and sees them as the stream's extra.
    with shmx.serve(name, image_streams()):
        insp = shmx.Inspector()
        assert insp.open(name)
        streams = {s["name"]: s for s in insp.get_streams_info()}
        insp.close()
    assert streams["img"]["shape"] == (4, 5, 3) and streams["img"]["extra"] == b"cam0"


@pytest.mark.parametrize("shape,words", [((4, 5, 2), "multiple of components=3"), ((0, 5), "dimension"),
                                         ("4x5", "tuple of ints"), ((4.0, 5), "not an int"),
                                         ((), "1..8 dimensions")])
def test_bad_shapes_are_refused_naming_the_call(shape, words) -> None:
    with pytest.raises(shmx.InvalidArgumentError) as info:
        shmx.create_stream_spec(1, "img", shmx.DT_U8, 3, 3, shape=shape)
    assert "create_stream_spec" in str(info.value) and "'img'" in str(info.value)
    assert words in str(info.value)


def test_snapshot_and_inspect_use_the_shape(name: str, tmp_path: Path) -> None:
    with shmx.serve(name, image_streams()) as srv:
        srv.publish({1: bytes(range(60)), 2: bytes(80), 3: bytes(24)})
        env_cmd = [sys.executable, "-m", "shmx"]
        png = tmp_path / "img.png"
        r = subprocess.run(env_cmd + ["snapshot", name, "-o", str(png), "--stream", "img"], cwd=str(ROOT),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "5x4 RGB" in r.stdout and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        npy = tmp_path / "depth.npy"
        r = subprocess.run(env_cmd + ["snapshot", name, "-o", str(npy), "--stream", "depth", "--json"],
                           cwd=str(ROOT), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["shape"] == [4, 5]
        r = subprocess.run(env_cmd + ["inspect", name], cwd=str(ROOT), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert "SHAPE" in r.stdout and "4x5x3" in r.stdout
        r = subprocess.run(env_cmd + ["inspect", name, "--json"], cwd=str(ROOT), capture_output=True,
                           text=True, timeout=60)
        streams = {s["name"]: s for s in json.loads(r.stdout)["streams"]}
        assert streams["img"]["shape"] == [4, 5, 3] and "shape" not in streams["flat"]


def test_frame_shape_helper_for_other_tools() -> None:
    from shmx._shape import frame_shape
    spec = {"shape": (4, 5, 3), "components": 3}
    assert frame_shape(spec, 20) == (4, 5, 3)
    assert frame_shape(spec, 19) is None
    assert frame_shape({"components": 1}, 5) is None


# ----------------------------------------------------------- schema checks
@pytest.mark.parametrize("spec,words", [
    (dict(stream_id=1, name="x", dtype_code=shmx.DT_F32, components=3, bytes_per_elem=8),
     ["'x'", "bytes_per_elem is 8", "take 12 bytes"]),
    (dict(stream_id=1, name="x", dtype_code=shmx.DT_F32, components=3.0, bytes_per_elem=12),
     ["'x'", "components must be an int", "float"]),
    (dict(stream_id="1", name="x", dtype_code=shmx.DT_F32, components=3, bytes_per_elem=12),
     ["'x'", "stream id must be an int", "str"]),
    (dict(stream_id=1, name="x", dtype_code=shmx.DT_F32, components=3, bytes_per_elem=12.0),
     ["'x'", "bytes_per_elem must be an int"]),
])
def test_schema_checks_name_the_stream_and_field(name: str, spec, words) -> None:
    srv = shmx.Server()
    assert not srv.create(name, streams=[shmx.create_stream_spec(**spec)])
    assert srv.last_error.startswith("create")
    for w in words:
        assert w in srv.last_error, srv.last_error
    with pytest.raises(shmx.InvalidArgumentError):
        shmx.serve(name, [shmx.create_stream_spec(**spec)])


def test_duplicates_are_refused(name: str) -> None:
    srv = shmx.Server()
    a = shmx.create_stream_spec(1, "a", shmx.DT_U8, 1, 1)
    assert not srv.create(name, streams=[a, shmx.create_stream_spec(1, "b", shmx.DT_U8, 1, 1)])
    assert "stream id 1 appears twice" in srv.last_error
    assert not srv.create(name, streams=[a, shmx.create_stream_spec(2, "a", shmx.DT_U8, 1, 1)])
    assert "stream name 'a' appears twice" in srv.last_error


def test_regions_made_by_others_are_read_as_they_are() -> None:
    """A stream whose bytes_per_elem is not components x dtype size (which a
    shmx 1.0.1 producer may create) still reads, as raw bytes per element."""
    np = pytest.importorskip("numpy")
    from shmx._numpy import stream_array
    spec = {"dtype_code": shmx.DT_U8, "components": 1, "bytes_per_elem": 6}
    arr = stream_array(memoryview(bytes(range(12))), 2, spec)
    assert arr.shape == (2, 6) and arr.dtype == np.uint8


# ------------------------------------------------ one behaviour per situation
SPEC = [shmx.create_stream_spec(1, "x", shmx.DT_U8, 1, 1)]


def test_create_on_a_live_server_refuses(name: str) -> None:
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    with shmx.connect(name) as c:
        srv.publish_stream(1, b"a")
        assert not srv.create(name, streams=SPEC)
        assert "destroy() first" in srv.last_error
        assert srv.is_open() and c.get_latest_frame()["x"]["data"].tobytes() == b"a"  # untouched
    srv.destroy()
    assert srv.create(name, streams=SPEC)  # after destroy: fine
    srv.destroy()


def test_every_call_after_destroy_says_the_server_is_gone(name: str) -> None:
    srv = shmx.Server()
    assert srv.create(name, streams=SPEC)
    kept = srv.publish_stream
    srv.destroy()
    for call, fn in [("publish", lambda: srv.publish({1: b"a"})),
                     ("publish", lambda: srv.publish({1: b"a", "x": b"b"})),
                     ("publish_stream", lambda: srv.publish_stream(1, b"a")),
                     ("publish_stream", lambda: kept(1, b"a")),
                     ("loan", lambda: srv.loan(1, 1, 1))]:
        with pytest.raises(shmx.ServerGoneError) as info:
            fn()
        assert str(info.value).startswith(call + ":") and "destroyed" in str(info.value)
    for call, fn, falsy in [("begin_frame", srv.begin_frame, None),
                            ("append_stream", lambda: srv.append_stream(1, 1, b"a", 1), False),
                            ("publish_frame", lambda: srv.publish_frame(1, 0.0), False),
                            ("write_static_append", lambda: srv.write_static_append(b"x"), False),
                            ("wait_control", lambda: srv.wait_control(0), False),
                            ("wait_readers", lambda: srv.wait_readers(1, 0), False),
                            ("poll_control", srv.poll_control, []),
                            ("snapshot_readers", srv.snapshot_readers, []),
                            ("get_header_info", srv.get_header_info, {}),
                            ("get_streams_info", srv.get_streams_info, [])]:
        srv.last_error = ""
        assert fn() == falsy, call
        assert srv.last_error.startswith(call + ":") and "destroyed" in srv.last_error, srv.last_error
        assert srv._last_status == shmx._lib.SHMX_ECLOSED


# -------------------------------------------------------------- messages
def test_messages_name_the_call_and_argument(name: str) -> None:
    with shmx.serve(name, SPEC) as srv, shmx.connect(name) as c:
        with pytest.raises(shmx.InvalidArgumentError) as info:
            srv.publish({1: 5})
        assert str(info.value).startswith("publish: stream 1:")
        with pytest.raises(shmx.InvalidArgumentError) as info:
            srv.publish({9: b"a"})
        assert str(info.value).startswith("publish:") and "9" in str(info.value)
        with pytest.raises(shmx.InvalidArgumentError) as info:
            srv.publish([b"a"])
        assert "publish: streams must be a dict" in str(info.value)
        assert not c.send_control(1, "hello")
        assert "send_control: data must be a bytes-like buffer, got str" in c.last_error
        assert not c.send_control(1.5, b"x")
        assert "send_control: type must be an int" in c.last_error
        assert not srv.append_stream(srv.begin_frame(), 1, b"a", 1.0)
        assert srv.last_error == "append_stream: elem_count must be an int, got float 1.0"
        assert not srv.publish_frame(12345, 0.0)
        assert srv.last_error.startswith("publish_frame: 12345 is not an open frame of this server")
