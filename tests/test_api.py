"""The documented Python API (shmx 1.0.1 names, arguments, return types and
dict keys) and our additions, in one process: every call, every refusal
(False/None plus a ``last_error`` that says what is wrong), zero-copy reads
that stay valid while the producer moves on, ordered reads with the exact
dropped count."""
from __future__ import annotations

import inspect
import os
import struct
import threading
import time
import tracemalloc

import numpy as np
import pytest

import shmx

SHM_DIR = os.environ.get("SHMX_DIR") or "/dev/shm"


def specs():
    return [shmx.create_stream_spec(1, "a", shmx.DT_U8, 1, 1),
            shmx.create_stream_spec(2, "b", shmx.DT_U32, 1, 4),
            shmx.create_stream_spec(3, "v", shmx.DT_F32, 3, 12, shmx.LAYOUT_AOS_VECTOR, b"meta")]


@pytest.fixture
def make_server():
    """``make_server(name, **create_kwargs)``: a created Server, destroyed
    after the test."""
    made = []

    def make(name, **kw):
        kw.setdefault("streams", specs())
        server = shmx.Server()
        assert server.create(name, **kw) is True, server.last_error
        made.append(server)
        return server

    yield make
    for server in made:
        server.destroy()


@pytest.fixture
def make_client():
    made = []

    def make(name):
        client = shmx.Client()
        assert client.open(name) is True, client.last_error
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def publish(server, a=b"", b=None, sim_time=0.0):
    """One frame with stream 1 = ``a`` (and stream 2 = ``b`` u32 values)."""
    frame = server.begin_frame()
    assert frame is not None, server.last_error
    assert server.append_stream(frame, 1, a, len(a)) is True, server.last_error
    if b is not None:
        data = struct.pack(f"<{len(b)}I", *b)
        assert server.append_stream(frame, 2, data, len(b)) is True, server.last_error
    assert server.publish_frame(frame, sim_time) is True, server.last_error


def address(view) -> int:
    """Where a buffer's bytes live (to tell slots apart)."""
    return np.frombuffer(view, dtype=np.uint8).ctypes.data


# ------------------------------------------------------------- constants

def test_dtype_constants_have_the_1_0_1_values():
    names = ["DT_BOOL", "DT_I8", "DT_U8", "DT_I16", "DT_U16", "DT_I32", "DT_U32", "DT_I64",
             "DT_U64", "DT_F16", "DT_BF16", "DT_F32", "DT_F64"]
    assert [getattr(shmx, n) for n in names] == list(range(1, 14))
    assert all(type(getattr(shmx, n)) is int for n in names)


def test_layout_and_tlv_constants_have_the_1_0_1_values():
    assert (shmx.LAYOUT_SOA_SCALAR, shmx.LAYOUT_AOS_VECTOR) == (0, 1)
    assert shmx.TLV_STATIC_DIR == 0x1000
    assert shmx.TLV_FRAME_STREAM == 0x2000
    assert shmx.TLV_CONTROL_USER == 0x3000


def test_documented_names_are_exported():
    for n in ["Server", "Client", "Inspector", "create_stream_spec", "dtype_to_string",
              "layout_to_string"]:
        assert hasattr(shmx, n), n
    for cls, methods in [
        (shmx.Server, ["create", "destroy", "begin_frame", "append_stream", "publish_frame",
                       "poll_control", "snapshot_readers", "reap_stale_readers",
                       "get_header_info", "write_static_append", "publish", "loan",
                       "wait_control"]),
        (shmx.Client, ["open", "close", "is_open", "get_latest_frame", "get_streams_info",
                       "get_header_info", "refresh_static", "send_control", "send_control_empty",
                       "read_next", "wait_frame", "frames", "server_alive"]),
        (shmx.Inspector, ["open", "close", "inspect", "get_header_info", "get_streams_info",
                          "get_readers_info", "copy_latest"]),
    ]:
        for m in methods:
            assert callable(getattr(cls, m, None)), f"{cls.__name__}.{m}"


def test_documented_signatures_and_defaults():
    p = inspect.signature(shmx.Server.create).parameters
    assert list(p)[1:8] == ["name", "slots", "reader_slots", "static_bytes_cap",
                            "frame_bytes_cap", "control_per_reader", "streams"]
    assert [p[k].default for k in list(p)[2:7]] == [3, 16, 4096, 65536, 4096]
    assert list(inspect.signature(shmx.Server.append_stream).parameters)[1:] == \
        ["frame_handle", "stream_id", "data", "elem_count"]
    assert list(inspect.signature(shmx.Server.publish_frame).parameters)[1:] == \
        ["frame_handle", "sim_time"]
    assert inspect.signature(shmx.Server.poll_control).parameters["max_messages"].default == 256
    assert list(inspect.signature(shmx.Server.reap_stale_readers).parameters)[1:] == \
        ["now_ticks", "timeout_ticks"]
    assert list(inspect.signature(shmx.Client.send_control).parameters)[1:] == ["type", "data"]
    p = inspect.signature(shmx.create_stream_spec).parameters
    positional = [k for k in p if p[k].kind is not inspect.Parameter.KEYWORD_ONLY]
    assert positional == ["stream_id", "name", "dtype_code", "components", "bytes_per_elem",
                          "layout_code", "extra"]
    assert p["layout_code"].default is None and p["extra"].default is None


def test_dtype_to_string_names_every_dtype():
    names = [shmx.dtype_to_string(code) for code in range(1, 14)]
    assert all(isinstance(n, str) and n and n != "unknown" for n in names)
    assert len(set(names)) == 13
    assert shmx.dtype_to_string(shmx.DT_F32) == "float32"
    assert shmx.dtype_to_string(shmx.DT_U8) == "uint8"
    for bad in (0, 14, 999, -1, 2 ** 40):
        assert isinstance(shmx.dtype_to_string(bad), str)  # never raises


def test_layout_to_string():
    scalar = shmx.layout_to_string(shmx.LAYOUT_SOA_SCALAR)
    vector = shmx.layout_to_string(shmx.LAYOUT_AOS_VECTOR)
    assert isinstance(scalar, str) and isinstance(vector, str) and scalar != vector
    for bad in (2, 99, -5):
        assert isinstance(shmx.layout_to_string(bad), str)


def test_create_stream_spec_round_trips_through_the_schema(name, make_server, make_client):
    plain = shmx.create_stream_spec(7, "pos", shmx.DT_F64, 3, 24)
    assert isinstance(plain, dict)
    vec = shmx.create_stream_spec(8, "rgb", shmx.DT_U8, 3, 3, layout_code=shmx.LAYOUT_AOS_VECTOR,
                                  extra=b"\x00\x01extra")
    make_server(name, streams=[plain, vec])
    info = {s["id"]: s for s in make_client(name).get_streams_info()}
    assert info[7] == {"id": 7, "name": "pos", "dtype": shmx.dtype_to_string(shmx.DT_F64),
                       "dtype_code": shmx.DT_F64, "components": 3,
                       "layout": shmx.layout_to_string(shmx.LAYOUT_SOA_SCALAR),
                       "bytes_per_elem": 24}
    assert "extra" not in info[7]
    assert info[8]["layout"] == shmx.layout_to_string(shmx.LAYOUT_AOS_VECTOR)
    assert info[8]["extra"] == b"\x00\x01extra"
    assert isinstance(info[8]["extra"], bytes)


# ---------------------------------------------------------- server basics

def test_create_returns_true_and_header_describes_region(name, make_server):
    server = shmx.Server()
    try:
        ok = server.create(name, 4, 8, 8192, 1000, 512, specs())  # documented positional order
        assert ok is True, server.last_error
        assert os.path.exists(os.path.join(SHM_DIR, name))
        h = server.get_header_info()
        assert isinstance(h, dict)
        assert (h["slots"], h["reader_slots"], h["frame_bytes_cap"]) == (4, 8, 1000)
        assert h["control_per_reader"] >= 512
        assert h["frame_seq"] == 0 and h["readers_connected"] == 0
        assert isinstance(h["session_id"], int) and h["session_id"] != 0
        assert (h["version_major"], h["version_minor"]) == (2, 0)
        assert h["owner_pid"] == os.getpid() and h["owner_alive"] is True
    finally:
        server.destroy()
    assert not os.path.exists(os.path.join(SHM_DIR, name))
    server.destroy()  # twice is harmless


def test_create_with_defaults_and_context_manager(name):
    with shmx.Server() as server:
        assert server.create(name, streams=specs()) is True
        h = server.get_header_info()
        assert (h["slots"], h["reader_slots"], h["frame_bytes_cap"]) == (3, 16, 65536)
    assert not os.path.exists(os.path.join(SHM_DIR, name))


def test_publish_cycle_types_and_frame_seq(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    for i in range(1, 4):
        frame = server.begin_frame()
        assert frame is not None
        assert type(server.append_stream(frame, 1, bytes([i]) * 5, 5)) is bool
        assert type(server.publish_frame(frame, i * 0.5)) is bool
        assert server.get_header_info()["frame_seq"] == i
        got = client.get_latest_frame()
        md = got["__metadata__"]
        assert md["frame_id"] == i and md["sim_time"] == i * 0.5
        assert bytes(got["a"]["data"]) == bytes([i]) * 5


def test_empty_frame_and_zero_element_stream(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    frame = server.begin_frame()
    assert server.publish_frame(frame, 1.0) is True
    got = client.get_latest_frame()
    assert set(got) == {"__metadata__"} and got["__metadata__"]["tlv_count"] == 0
    frame = server.begin_frame()
    assert server.append_stream(frame, 2, b"", 0) is True
    assert server.publish_frame(frame, 2.0) is True
    got = client.get_latest_frame()
    assert got["b"]["elem_count"] == 0 and got["b"]["bytes"] == 0 and bytes(got["b"]["data"]) == b""


# ------------------------------------------------------ append refusals

def _refusals(server, other):
    """(label, call, words the message must contain) for each refusal; a
    tuple of words means one of them."""
    frame = server.begin_frame()
    assert frame is not None

    def finished():
        f = server.begin_frame()
        server.publish_frame(f, 0.0)
        return server.append_stream(f, 1, b"x", 1)

    def replaced():
        f = server.begin_frame()
        server.begin_frame()  # abandons f
        return server.append_stream(f, 1, b"x", 1)

    def twice():
        f = server.begin_frame()
        assert server.append_stream(f, 1, b"x", 1)
        return server.append_stream(f, 1, b"y", 1)

    foreign = other.begin_frame()
    return [
        ("unknown stream id", lambda: server.append_stream(frame, 99, b"x", 1), ["99", "schema"]),
        ("too many bytes", lambda: server.append_stream(frame, 2, b"\0" * 12, 2), ["12", "bytes_per_elem"]),
        ("too few bytes", lambda: server.append_stream(frame, 2, b"\0" * 7, 2), ["7", "bytes_per_elem"]),
        ("count mismatch", lambda: server.append_stream(frame, 1, b"abc", 4), ["3", "4"]),
        ("over frame_bytes_cap", lambda: server.append_stream(frame, 1, b"\0" * 1025, 1025),
         ["frame_bytes_cap"]),
        ("same stream twice", twice, ["already"]),
        ("finished handle", finished, ["finished"]),
        ("abandoned handle", replaced, ["finished"]),
        ("foreign handle", lambda: server.append_stream(foreign, 1, b"x", 1), ["another server"]),
        ("garbage handle", lambda: server.append_stream(12345, 1, b"x", 1), ["handle"]),
        ("None handle", lambda: server.append_stream(None, 1, b"x", 1), ["handle"]),
        ("str handle", lambda: server.append_stream("frame", 1, b"x", 1), ["handle"]),
        ("non-contiguous array",
         lambda: server.append_stream(frame, 1, np.arange(20, dtype=np.uint8)[::2], 10), ["contiguous"]),
        ("str data", lambda: server.append_stream(frame, 1, "hello", 5), ["buffer", ("unicode", " str")]),
        ("int data", lambda: server.append_stream(frame, 1, 5, 1), ["buffer"]),
        ("None data", lambda: server.append_stream(frame, 1, None, 0), ["buffer"]),
        ("negative count", lambda: server.append_stream(frame, 1, b"x", -1), []),
        ("str stream id", lambda: server.append_stream(frame, "a", b"x", 1), []),
    ]


def test_append_stream_refusals_return_false_and_say_why(name, unique_name, make_server, make_client):
    server = make_server(name, frame_bytes_cap=1024)
    other = make_server(unique_name("other"))
    client = make_client(name)
    failures = []
    for label, call, words in _refusals(server, other):
        server.last_error = ""
        result = call()
        msg = server.last_error
        if result is not False:
            failures.append(f"{label}: returned {result!r}")
        elif not msg or not all(any(x in msg for x in w) if isinstance(w, tuple) else w in msg
                                 for w in words):
            failures.append(f"{label}: last_error {msg!r} should mention {words}")
    assert not failures, "\n".join(failures)
    # The server still works after all that, and readers get exactly what
    # was accepted.
    frame = server.begin_frame()
    assert server.append_stream(frame, 1, b"ok", 2) is True
    assert server.append_stream(frame, 1, b"no", 2) is False
    assert server.append_stream(frame, 2, b"\1\0\0\0", 1) is True
    assert server.publish_frame(frame, 9.0) is True
    got = client.get_latest_frame()
    assert set(got) == {"__metadata__", "a", "b"}
    assert bytes(got["a"]["data"]) == b"ok" and bytes(got["b"]["data"]) == b"\1\0\0\0"
    assert got["__metadata__"]["tlv_count"] == 2


def test_frame_over_cap_across_streams_is_refused(name, make_server):
    server = make_server(name, frame_bytes_cap=1000)
    frame = server.begin_frame()
    assert server.append_stream(frame, 1, b"\0" * 600, 600) is True
    assert server.append_stream(frame, 2, b"\0" * 600, 150) is False
    assert "frame_bytes_cap" in server.last_error
    assert server.publish_frame(frame, 0.0) is True


def test_publish_frame_refusals(name, unique_name, make_server):
    server = make_server(name)
    other = make_server(unique_name("other"))
    frame = server.begin_frame()
    assert server.publish_frame(frame, 0.0) is True
    assert server.publish_frame(frame, 0.0) is False and "finished" in server.last_error
    foreign = other.begin_frame()
    assert server.publish_frame(foreign, 0.0) is False and "another server" in server.last_error
    assert other.publish_frame(foreign, 0.0) is True  # still good for its own server
    assert server.publish_frame(None, 0.0) is False and "handle" in server.last_error
    frame = server.begin_frame()
    assert server.publish_frame(frame, "soon") is False and server.last_error
    assert server.publish_frame(frame, 1.0) is True
    assert server.get_header_info()["frame_seq"] == 2


def test_append_stream_accepts_every_buffer_kind(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    raw = bytes(range(48))
    vec = np.arange(12, dtype=np.float32).reshape(4, 3)
    for data in (raw, bytearray(raw), memoryview(raw), memoryview(bytearray(raw))[0:48],
                 np.frombuffer(raw, dtype=np.uint8), np.frombuffer(raw, dtype=np.uint8).reshape(6, 8)):
        frame = server.begin_frame()
        assert server.append_stream(frame, 1, data, 48) is True, (type(data), server.last_error)
        assert server.append_stream(frame, 3, vec, 4) is True, server.last_error
        assert server.publish_frame(frame, 0.0) is True
        got = client.get_latest_frame()
        assert bytes(got["a"]["data"]) == raw
        assert np.array_equal(np.frombuffer(got["v"]["data"], dtype=np.float32).reshape(4, 3), vec)
    # A read-only numpy array is fine too (append never writes to it).
    ro = np.arange(48, dtype=np.uint8)
    ro.flags.writeable = False
    frame = server.begin_frame()
    assert server.append_stream(frame, 1, ro, 48) is True
    assert server.publish_frame(frame, 0.0) is True
    assert bytes(client.get_latest_frame()["a"]["data"]) == ro.tobytes()


def test_big_numpy_array_is_appended_without_a_copy(name, make_server, make_client):
    size = 6 * 1024 * 1024
    server = make_server(name, slots=2, frame_bytes_cap=size,
                         streams=[shmx.create_stream_spec(1, "big", shmx.DT_U8, 1, 1)])
    client = make_client(name)
    data = np.random.default_rng(1).integers(0, 256, size=size, dtype=np.uint8)
    frame = server.begin_frame()
    tracemalloc.start()
    try:
        ok = server.append_stream(frame, 1, data, size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ok is True, server.last_error
    assert peak < size // 8, f"append_stream allocated {peak} bytes for a {size}-byte array"
    assert server.publish_frame(frame, 0.0) is True
    got = client.get_latest_frame()
    assert got["big"]["bytes"] == size and got["big"]["elem_count"] == size
    assert np.array_equal(np.frombuffer(got["big"]["data"], dtype=np.uint8), data)


def test_documented_video_example_config_fits_a_full_frame(name, make_client):
    # Example 1 of the shmx 1.0.1 page, as written there.
    streams = [shmx.create_stream_spec(1, "width", shmx.DT_U32, 1, 4),
               shmx.create_stream_spec(2, "height", shmx.DT_U32, 1, 4),
               shmx.create_stream_spec(3, "pixels", shmx.DT_U8, 1, 1)]
    server = shmx.Server()
    try:
        assert server.create(name, slots=4, frame_bytes_cap=1920 * 1080 * 3, streams=streams) is True
        client = make_client(name)
        width, height = 1920, 1080
        for k in range(2):
            pixels = np.random.default_rng(k).integers(0, 255, (height, width, 3), dtype=np.uint8)
            frame = server.begin_frame()
            assert server.append_stream(frame, 1, width.to_bytes(4, "little"), 1) is True, server.last_error
            assert server.append_stream(frame, 2, height.to_bytes(4, "little"), 1) is True, server.last_error
            assert server.append_stream(frame, 3, pixels.tobytes(), width * height * 3) is True, \
                server.last_error
            assert server.publish_frame(frame, time.time()) is True
            got = client.get_latest_frame()
            assert got is not None, client.last_error
            assert int.from_bytes(got["width"]["data"], "little") == width
            assert int.from_bytes(got["height"]["data"], "little") == height
            view = np.frombuffer(got["pixels"]["data"], dtype=np.uint8).reshape((height, width, 3))
            assert np.array_equal(view, pixels)
    finally:
        server.destroy()


# -------------------------------------------- before create / after destroy

def _server_calls(server):
    return {
        "begin_frame": (lambda: server.begin_frame(), None),
        "append_stream": (lambda: server.append_stream(1, 1, b"x", 1), False),
        "publish_frame": (lambda: server.publish_frame(1, 0.0), False),
        "write_static_append": (lambda: server.write_static_append(b"x"), False),
        "reap_stale_readers": (lambda: server.reap_stale_readers(time.monotonic_ns(), 0), 0),
        "wait_control": (lambda: server.wait_control(0.01), False),
    }


@pytest.mark.parametrize("when", ["before create", "after destroy"])
def test_server_calls_without_a_region_refuse(when, name):
    server = shmx.Server()
    if when == "after destroy":
        assert server.create(name, streams=specs())
        server.destroy()
    failures = []
    for label, (call, expected) in _server_calls(server).items():
        server.last_error = ""
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - this is what we check
            failures.append(f"{label} raised {type(exc).__name__}: {exc}")
            continue
        if result != expected or type(result) is not type(expected):
            failures.append(f"{label} returned {result!r}")
        elif "create" not in server.last_error and "destroy" not in server.last_error:
            failures.append(f"{label}: last_error {server.last_error!r}")
    assert not failures, "\n".join(failures)
    assert server.poll_control() == [] and server.snapshot_readers() == []
    assert server.get_header_info() == {}
    with pytest.raises(shmx.ShmxError):
        server.publish({1: b"x"})
    with pytest.raises(shmx.ShmxError):
        server.loan(1, 1, 1)
    server.destroy()


@pytest.mark.parametrize("when", ["before open", "after close"])
def test_client_calls_without_a_region_refuse(when, name, make_server):
    make_server(name)
    client = shmx.Client()
    if when == "after close":
        assert client.open(name)
        client.close()
    calls = {
        "get_latest_frame": (client.get_latest_frame, None),
        "read_next": (client.read_next, None),
        "wait_frame": (lambda: client.wait_frame(timeout=0.01), None),
        "refresh_static": (client.refresh_static, False),
        "send_control": (lambda: client.send_control(5, b"x"), False),
        "send_control_empty": (lambda: client.send_control_empty(5), False),
    }
    failures = []
    for label, (call, expected) in calls.items():
        client.last_error = ""
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{label} raised {type(exc).__name__}: {exc}")
            continue
        if result is not expected:
            failures.append(f"{label} returned {result!r}")
        elif "open" not in client.last_error and "close" not in client.last_error:
            failures.append(f"{label}: last_error {client.last_error!r}")
    assert not failures, "\n".join(failures)
    assert client.is_open() is False
    assert client.get_header_info() == {}
    assert client.server_alive() is None
    assert list(client.frames(timeout=0.01)) == []
    client.close()


def test_inspector_calls_without_a_region(name):
    insp = shmx.Inspector()
    assert insp.open(name) is False and name in insp.last_error
    assert insp.inspect() == {} and insp.get_header_info() == {}
    assert insp.get_streams_info() == [] and insp.get_readers_info() == []
    assert insp.copy_latest() is None
    insp.close()
    insp.close()


# ------------------------------------------------------- names and configs

BAD_NAMES = [
    ("", "empty"),
    ("a/b", "character"),
    ("a b", "character"),
    ("semi;colon", "character"),
    ("x" * 201, "201"),
    (".", "reserved"),
    ("..", "reserved"),
    ("caf\u00e9", "character"),
    ("nul\x00byte", "NUL"),
]


@pytest.mark.parametrize("bad,word", BAD_NAMES, ids=[repr(b[:12]) for b, _ in BAD_NAMES])
def test_bad_names_are_refused(bad, word):
    before = set(os.listdir(SHM_DIR))
    server, client, insp = shmx.Server(), shmx.Client(), shmx.Inspector()
    try:
        assert server.create(bad, streams=specs()) is False
        assert word.lower() in server.last_error.lower(), server.last_error
        assert "name" in server.last_error
        assert client.open(bad) is False and "name" in client.last_error
        assert insp.open(bad) is False and "name" in insp.last_error
    finally:
        server.destroy()
        client.close()
        insp.close()
    assert set(os.listdir(SHM_DIR)) - before == set()


def test_longest_name_and_leading_slash_are_accepted(unique_name):
    base = unique_name("long")
    long_name = base + "x" * (200 - len(base))
    with shmx.Server() as server:
        assert server.create(long_name, streams=specs()) is True, server.last_error
        with shmx.Client() as client:
            assert client.open(long_name) is True
    slashed = unique_name("slash")
    with shmx.Server() as server:
        assert server.create("/" + slashed, streams=specs()) is True, server.last_error
        with shmx.Client() as client:
            assert client.open(slashed) is True, client.last_error
    for n in (long_name, slashed):
        assert not os.path.exists(os.path.join(SHM_DIR, n))


def test_non_str_names_are_refused():
    for bad in (None, 5, 3.5, ["x"]):
        server, client = shmx.Server(), shmx.Client()
        assert server.create(bad, streams=specs()) is False and "name" in server.last_error
        assert client.open(bad) is False and "name" in client.last_error


BAD_CONFIGS = [
    (dict(slots=0), "slots"),
    (dict(reader_slots=0), "reader_slots"),
    (dict(reader_slots=65), "reader_slots"),
    (dict(reader_slots=1000), "reader_slots"),
    (dict(slots=-1), "slots"),
    (dict(slots="3"), "slots"),
    (dict(frame_bytes_cap=0), "frame_bytes_cap"),
    (dict(streams=specs() + [shmx.create_stream_spec(1, "other", shmx.DT_U8, 1, 1)]), "id 1"),
    (dict(streams=specs() + [shmx.create_stream_spec(9, "a", shmx.DT_U8, 1, 1)]), "'a'"),
    (dict(streams=[shmx.create_stream_spec(1, "z", 99, 1, 1)]), "dtype"),
    (dict(streams=[shmx.create_stream_spec(1, "z", 0, 1, 1)]), "dtype"),
    (dict(streams=[shmx.create_stream_spec(1, "", shmx.DT_U8, 1, 1)]), "name"),
    (dict(streams=[shmx.create_stream_spec(1, "z", shmx.DT_U8, 0, 1)]), "components"),
    (dict(streams=[shmx.create_stream_spec(1, "z", shmx.DT_U8, 1, 0)]), "bytes_per_elem"),
    (dict(streams=[shmx.create_stream_spec(1, "z", shmx.DT_U8, 1, 1, layout_code=7)]), "layout"),
    (dict(streams=[{"id": 1, "name": "z"}]), "dtype_code"),
    (dict(streams=["not a spec"]), "stream"),
    (dict(static_bytes_cap=64, streams=[shmx.create_stream_spec(i, f"s{i}", shmx.DT_U8, 1, 1)
                                        for i in range(10)]), "static_bytes_cap"),
]


@pytest.mark.parametrize("kwargs,word", BAD_CONFIGS, ids=[w + str(i) for i, (_, w) in enumerate(BAD_CONFIGS)])
def test_bad_configs_are_refused(kwargs, word, name):
    server = shmx.Server()
    try:
        kwargs = dict(kwargs)
        kwargs.setdefault("streams", specs())
        assert server.create(name, **kwargs) is False
        assert word in server.last_error, server.last_error
        assert server.begin_frame() is None
    finally:
        server.destroy()
    assert not os.path.exists(os.path.join(SHM_DIR, name))


def test_create_on_a_live_name_names_the_owner(name, make_server, make_client):
    first = make_server(name)
    client = make_client(name)
    publish(first, b"x")
    second = shmx.Server()
    assert second.create(name, streams=specs()) is False
    assert str(os.getpid()) in second.last_error
    assert "alive" in second.last_error or "exists" in second.last_error
    # The live region is untouched.
    assert client.get_latest_frame()["__metadata__"]["frame_id"] == 1
    assert first.get_header_info()["session_id"] == client.get_header_info()["session_id"]
    with pytest.raises(FileExistsError):
        shmx.serve(name, streams=specs())


def test_create_after_destroy_gives_a_new_session(name):
    with shmx.Server() as first:
        assert first.create(name, streams=specs())
        session = first.get_header_info()["session_id"]
    with shmx.Server() as second:
        assert second.create(name, streams=specs()) is True, second.last_error
        assert second.get_header_info()["session_id"] != session


# ------------------------------------------------------------ client reads

def test_open_missing_region_fails(name):
    client = shmx.Client()
    assert client.open(name) is False
    assert name in client.last_error
    assert client.is_open() is False


def test_no_frame_yet(name, make_server, make_client):
    make_server(name)
    client = make_client(name)
    assert client.get_latest_frame() is None and "no frame" in client.last_error
    assert client.read_next() is None and "no frame" in client.last_error
    assert client.wait_frame(timeout=0.05) is None


def test_frame_dict_has_the_documented_shape(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    assert client.is_open() is True
    publish(server, b"hello", [1, 2, 3], sim_time=1.25)
    frame = client.get_latest_frame()
    assert isinstance(frame, dict)
    assert set(frame) == {"__metadata__", "a", "b"}  # stream 3 was not in this frame
    md = frame["__metadata__"]
    for key, typ in (("frame_id", int), ("sim_time", float), ("payload_bytes", int), ("tlv_count", int)):
        assert type(md[key]) is typ, key
    assert md["frame_id"] == 1 and md["sim_time"] == 1.25 and md["tlv_count"] == 2
    assert md["payload_bytes"] >= 5 + 12
    for stream, nbytes, count in (("a", 5, 5), ("b", 12, 3)):
        entry = frame[stream]
        assert isinstance(entry["data"], memoryview)
        assert entry["data"].readonly
        assert (entry["bytes"], entry["elem_count"]) == (nbytes, count)
        assert len(entry["data"]) == nbytes
    assert bytes(frame["a"]["data"]) == b"hello"
    assert struct.unpack("<3I", frame["b"]["data"]) == (1, 2, 3)
    with pytest.raises(TypeError):
        frame["a"]["data"][0] = 0


def test_views_point_into_shared_memory(name, make_server, make_client):
    """Zero copy: a view is the slot itself.  Once the client lets go of the
    frame and the producer reuses the slot, the same view shows new bytes."""
    server = make_server(name, slots=2)
    client = make_client(name)
    publish(server, b"\x01" * 64)
    view = client.get_latest_frame()["a"]["data"]
    assert bytes(view) == b"\x01" * 64
    client.release()  # drop the pin: the slot may now be reused
    publish(server, b"\x02" * 64)
    publish(server, b"\x03" * 64)  # back in the first slot
    assert bytes(view) == b"\x03" * 64


def test_held_frame_stays_unchanged_while_producer_moves_on(name, make_server, make_client):
    server = make_server(name, slots=3)
    client = make_client(name)
    other = make_client(name)
    payload = bytes(range(256)) * 4
    publish(server, payload, [7, 8, 9], sim_time=1.0)
    held = client.get_latest_frame()
    views = (held["a"]["data"], held["b"]["data"])
    for i in range(2, 300):
        publish(server, bytes([i & 0xFF]) * 1024, [i, i, i], sim_time=float(i))
        if i % 7 == 0:
            other.get_latest_frame()  # a second reader moving along meanwhile
        assert bytes(views[0]) == payload, f"held frame changed after publish {i}"
    assert struct.unpack("<3I", views[1]) == (7, 8, 9)
    assert held["__metadata__"]["frame_id"] == 1
    assert server.get_header_info()["overruns"] == 0
    newest = client.get_latest_frame()
    assert newest["__metadata__"]["frame_id"] == 299
    assert bytes(newest["a"]["data"]) == bytes([299 & 0xFF]) * 1024


def test_every_slot_is_used_when_nothing_is_pinned(name, make_server, make_client):
    server = make_server(name, slots=4)
    client = make_client(name)
    seen = set()
    for i in range(12):
        publish(server, bytes([i]) * 8)
        seen.add(address(client.get_latest_frame()["a"]["data"]))
    assert len(seen) == 4


def test_latest_while_the_latest_slot_is_being_rewritten(name, make_server, make_client):
    """Readers pin two of three slots, so the producer's next frame goes into
    the slot of the latest one.  Meanwhile the newest complete frame is the
    one before it: a reader on an older frame must get that, not keep its own."""
    server = make_server(name, slots=3)
    a, b = make_client(name), make_client(name)
    publish(server, b"\x01")
    assert a.get_latest_frame()["__metadata__"]["frame_id"] == 1
    publish(server, b"\x02")
    assert b.get_latest_frame()["__metadata__"]["frame_id"] == 2
    publish(server, b"\x03")
    frame = server.begin_frame()  # overwrites frame 3's slot: the only one free
    assert frame is not None
    got = a.get_latest_frame()
    assert got["__metadata__"]["frame_id"] == 2 and bytes(got["a"]["data"]) == b"\x02"
    assert b.get_latest_frame()["__metadata__"]["frame_id"] == 2  # nothing newer is complete
    assert server.append_stream(frame, 1, b"\x04", 1) and server.publish_frame(frame, 0.0)
    assert a.get_latest_frame()["__metadata__"]["frame_id"] == 4
    assert b.get_latest_frame()["__metadata__"]["frame_id"] == 4


def test_begin_frame_refused_while_every_slot_is_pinned(name, make_server, make_client):
    """Held frames are never overwritten: with both slots held, begin_frame
    says no (None, last_error, overruns counted) and nothing changes."""
    server = make_server(name, slots=2)
    a, b = make_client(name), make_client(name)
    publish(server, b"\x01")
    held_a = a.get_latest_frame()
    publish(server, b"\x02")
    held_b = b.get_latest_frame()
    assert server.begin_frame() is None
    assert "pinned" in server.last_error
    assert server.get_header_info()["overruns"] == 1
    assert bytes(held_a["a"]["data"]) == b"\x01" and bytes(held_b["a"]["data"]) == b"\x02"
    assert a.get_latest_frame()["__metadata__"]["frame_id"] == 2  # a lets go of slot 0
    publish(server, b"\x03")
    assert bytes(held_b["a"]["data"]) == b"\x02"
    assert a.get_latest_frame()["__metadata__"]["frame_id"] == 3


def test_frame_ids_never_go_backwards(name, make_server, make_client):
    server = make_server(name, slots=3)
    client = make_client(name)
    last = 0
    rng = np.random.default_rng(5)
    for i in range(1, 400):
        publish(server, bytes([i & 0xFF]) * int(rng.integers(1, 200)))
        if rng.random() < 0.4:
            frame = client.get_latest_frame()
            fid = frame["__metadata__"]["frame_id"]
            assert fid >= last
            assert bytes(frame["a"]["data"]) == bytes([fid & 0xFF]) * frame["a"]["bytes"]
            last = fid
    # Nothing new: the same frame comes back, not an older one and not None.
    again = client.get_latest_frame()
    assert again is not None and again["__metadata__"]["frame_id"] >= last


def test_read_next_in_order(name, make_server, make_client):
    server = make_server(name, slots=8)
    client = make_client(name)
    publish(server, b"\x01")
    first = client.read_next()  # the first call gives the latest frame
    assert first["__metadata__"]["frame_id"] == 1 and first["__metadata__"]["dropped"] == 0
    for i in range(2, 6):
        publish(server, bytes([i]))
    for i in range(2, 6):
        frame = client.read_next()
        assert frame["__metadata__"]["frame_id"] == i
        assert frame["__metadata__"]["dropped"] == 0
        assert bytes(frame["a"]["data"]) == bytes([i])
    assert client.read_next() is None and "no frame after 5" in client.last_error


def test_read_next_reports_exact_drops_after_an_overrun(name, make_server, make_client):
    server = make_server(name, slots=4)
    client = make_client(name)
    publish(server, b"\x01")
    assert client.read_next()["__metadata__"]["frame_id"] == 1  # pins frame 1's slot
    for i in range(2, 12):
        publish(server, bytes([i]))
    # Frame 1 stays pinned, so frames 2..11 went round the other 3 slots:
    # 9, 10, 11 are left, 2..8 are gone, and the lapped reader passes over
    # 9 as well (a quarter of the ring, see csrc/client.c, client_next).
    frame = client.read_next()
    assert frame["__metadata__"]["frame_id"] == 10
    assert frame["__metadata__"]["dropped"] == 8
    assert bytes(frame["a"]["data"]) == b"\x0a"
    frame = client.read_next()
    assert (frame["__metadata__"]["frame_id"], frame["__metadata__"]["dropped"]) == (11, 0)
    assert client.read_next() is None
    reader = [r for r in server.snapshot_readers() if r["in_use"]][0]
    assert (reader["frames_read"], reader["frames_dropped"]) == (3, 8)
    assert client.dropped_total == 8


def test_read_next_drops_when_nothing_is_pinned(name, make_server, make_client):
    server = make_server(name, slots=4)
    client = make_client(name)
    publish(server, b"\x01")
    assert client.read_next()["__metadata__"]["frame_id"] == 1
    client.release()
    for i in range(2, 12):
        publish(server, bytes([i]))
    # 8..11 are left; a lapped reader passes over the quarter of the ring
    # the producer rewrites first (csrc/client.c, client_next).
    frame = client.read_next()
    assert (frame["__metadata__"]["frame_id"], frame["__metadata__"]["dropped"]) == (9, 7)
    ids = [client.read_next()["__metadata__"]["frame_id"] for _ in range(2)]
    assert ids == [10, 11]


def test_get_latest_after_read_next_skips_ahead_never_back(name, make_server, make_client):
    server = make_server(name, slots=4)
    client = make_client(name)
    for i in range(1, 4):
        publish(server, bytes([i]))
    assert client.get_latest_frame()["__metadata__"]["frame_id"] == 3
    assert client.read_next() is None  # nothing after 3
    publish(server, b"\x04")
    publish(server, b"\x05")
    assert client.read_next()["__metadata__"]["frame_id"] == 4
    assert client.get_latest_frame()["__metadata__"]["frame_id"] == 5
    assert client.read_next() is None


def test_wait_frame_and_frames(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    assert client.wait_frame(timeout=0.05) is None

    def later():
        time.sleep(0.05)
        for i in range(1, 4):
            publish(server, bytes([i]))
            time.sleep(0.02)

    t = threading.Thread(target=later)
    t.start()
    try:
        frame = client.wait_frame(timeout=10.0)
    finally:
        t.join(10.0)
    assert frame is not None and frame["__metadata__"]["frame_id"] >= 1
    latest = client.get_latest_frame()["__metadata__"]["frame_id"]
    assert latest == 3
    # Two more frames: frames() skips to the newest, yields it once, then
    # ends at its timeout.
    publish(server, b"\x04")
    publish(server, b"\x05")
    ids = [f["__metadata__"]["frame_id"] for f in client.frames(timeout=0.1)]
    assert ids == [5]
    assert client.wait_frame(timeout=0.05) is None  # nothing new
    publish(server, b"\x09")
    assert client.wait_frame(timeout=10.0)["__metadata__"]["frame_id"] == 6


def test_server_alive_and_destroy_seen_by_readers(name, make_client):
    server = shmx.Server()
    assert server.create(name, streams=specs())
    client = make_client(name)
    try:
        publish(server, b"kept")
        frame = client.get_latest_frame()
        assert client.server_alive() is True
        assert client.get_header_info()["owner_alive"] is True
    finally:
        server.destroy()
    assert client.server_alive() is False
    assert client.get_header_info()["closed"] is True
    assert client.wait_frame(timeout=0.3) is None
    assert bytes(frame["a"]["data"]) == b"kept"  # mapping still valid: no SIGBUS
    assert client.get_latest_frame()["__metadata__"]["frame_id"] == 1
    assert not os.path.exists(os.path.join(SHM_DIR, name))


def test_waits_without_timeout_end_when_the_server_is_gone(name, make_client):
    """wait_frame() and frames() with no timeout return (None / stop) once
    the server is destroyed and nobody took its name over."""
    server = shmx.Server()
    assert server.create(name, streams=specs())
    client = make_client(name)
    publish(server, b"x")
    frame = client.get_latest_frame()  # (also keeps the mapping alive meanwhile)
    server.destroy()
    results = {}

    def wait():
        results["wait_frame"] = client.wait_frame()
        results["frames"] = list(client.frames())

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    t.join(10.0)
    hung = t.is_alive()
    if hung:
        client.close()  # ends the wait loop (it checks between 50 ms slices)
        t.join(5.0)
    assert not hung, "wait_frame()/frames() kept waiting after the server was destroyed"
    assert results == {"wait_frame": None, "frames": []}
    assert "gone" in client.last_error or "destroyed" in client.last_error
    assert frame["__metadata__"]["frame_id"] == 1


def test_close_releases_reader_slot(name, make_server):
    server = make_server(name, reader_slots=2)
    a, b, c = shmx.Client(), shmx.Client(), shmx.Client()
    try:
        assert a.open(name) and b.open(name)
        assert server.get_header_info()["readers_connected"] == 2
        assert c.open(name) is False and "reader slots" in c.last_error
        a.close()
        assert a.is_open() is False
        assert server.get_header_info()["readers_connected"] == 1
        assert c.open(name) is True, c.last_error
        a.close()  # twice is harmless
    finally:
        for cl in (a, b, c):
            cl.close()
    assert server.get_header_info()["readers_connected"] == 0


def test_client_context_manager(name, make_server):
    server = make_server(name)
    publish(server, b"x")
    with shmx.Client() as client:
        assert client.open(name)
        assert client.get_latest_frame() is not None
    assert client.is_open() is False
    assert server.get_header_info()["readers_connected"] == 0


# ------------------------------------------------------- info and schema

def test_streams_and_header_info_on_client(name, make_server, make_client):
    server = make_server(name, slots=5, reader_slots=7, frame_bytes_cap=4000)
    client = make_client(name)
    streams = client.get_streams_info()
    assert isinstance(streams, list) and len(streams) == 3
    for s in streams:
        assert {"id", "name", "dtype", "dtype_code", "components", "layout", "bytes_per_elem"} <= set(s)
        assert s["dtype"] == shmx.dtype_to_string(s["dtype_code"])
    by_id = {s["id"]: s for s in streams}
    assert (by_id[2]["name"], by_id[2]["dtype_code"], by_id[2]["bytes_per_elem"]) == ("b", shmx.DT_U32, 4)
    assert (by_id[3]["components"], by_id[3]["extra"]) == (3, b"meta")
    assert streams == server.get_streams_info()
    h = client.get_header_info()
    hs = server.get_header_info()
    for key in ("session_id", "slots", "reader_slots", "frame_bytes_cap", "control_per_reader",
                "version_major", "version_minor", "magic"):
        assert h[key] == hs[key], key
    assert (h["slots"], h["reader_slots"], h["frame_bytes_cap"]) == (5, 7, 4000)
    assert h["readers_connected"] == 1


def test_write_static_append_and_refresh_static(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    before = client.get_header_info()
    assert server.write_static_append(b"extra_metadata", len(b"extra_metadata")) is True
    after = server.get_header_info()
    assert after["static_gen"] == before["static_gen"] + 1
    assert after["static_bytes_used"] == before["static_bytes_used"] + 14
    assert client.refresh_static() is True
    assert client.get_header_info()["static_gen"] == after["static_gen"]
    assert [s["id"] for s in client.get_streams_info()] == [1, 2, 3]
    # size selects a prefix
    assert server.write_static_append(b"abcdef", 2) is True
    assert server.get_header_info()["static_bytes_used"] == after["static_bytes_used"] + 2
    assert server.write_static_append(b"abc", 10) is False and "size" in server.last_error
    assert server.write_static_append(b"\0" * 5000) is False
    assert "do not fit" in server.last_error or "static" in server.last_error
    assert server.write_static_append("text") is False and server.last_error


def _descriptor(stream_id, name, dtype, components, bytes_per_elem):
    body = struct.pack("<8I", stream_id, dtype, components, 0, bytes_per_elem, 0, len(name), 0) + name
    raw = struct.pack("<II", shmx.TLV_STATIC_DIR, len(body)) + body
    return raw + b"\0" * (-len(raw) % 16)


def test_appended_stream_descriptor_extends_the_schema(name, make_server, make_client):
    server = make_server(name, streams=specs()[:1])
    client = make_client(name)
    assert server.write_static_append(_descriptor(5, b"late", shmx.DT_U16, 1, 2)) is True
    assert client.refresh_static() is True
    late = [s for s in client.get_streams_info() if s["id"] == 5]
    assert late and late[0]["name"] == "late" and late[0]["dtype_code"] == shmx.DT_U16
    frame = server.begin_frame()
    assert server.append_stream(frame, 5, b"\1\0\2\0", 2) is True, server.last_error
    assert server.publish_frame(frame, 0.0)
    assert bytes(client.get_latest_frame()["late"]["data"]) == b"\1\0\2\0"


# ---------------------------------------------------------------- control

def test_control_messages_round_trip(name, make_server, make_client):
    server = make_server(name)
    c1, c2 = make_client(name), make_client(name)
    assert server.poll_control() == []
    assert c1.send_control(0x1001, struct.pack("f", 100.0)) is True
    assert c2.send_control_empty(0x1002) is True
    assert c1.send_control(7, bytearray(b"ba")) is True
    assert c1.send_control(8, memoryview(b"mv")) is True
    assert c1.send_control(9, np.arange(3, dtype=np.uint8)) is True
    msgs = server.poll_control()
    assert isinstance(msgs, list) and len(msgs) == 5
    for m in msgs:
        assert {"reader_id", "type", "data"} <= set(m)
        assert isinstance(m["data"], bytes) and isinstance(m["type"], int)
    mine = [(m["type"], m["data"]) for m in msgs if m["reader_id"] == c1.reader_id]
    assert mine == [(0x1001, struct.pack("f", 100.0)), (7, b"ba"), (8, b"mv"), (9, b"\0\1\2")]
    theirs = [(m["type"], m["data"]) for m in msgs if m["reader_id"] == c2.reader_id]
    assert theirs == [(0x1002, b"")]
    assert c1.reader_id != c2.reader_id
    assert server.poll_control() == []


def test_poll_control_max_messages(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    for k in range(10):
        assert client.send_control(100 + k, bytes([k]))
    got = server.poll_control(max_messages=3)
    assert [m["type"] for m in got] == [100, 101, 102]
    got += server.poll_control(max_messages=100)
    assert [m["data"] for m in got] == [bytes([k]) for k in range(10)]


def test_control_refusals(name, make_server, make_client):
    server = make_server(name, control_per_reader=256)
    client = make_client(name)
    assert client.send_control(0, b"x") is False and "type 0" in client.last_error
    assert client.send_control(5, "text") is False and client.last_error
    assert client.send_control(5, b"\0" * 300) is False and "300" in client.last_error
    sent = 0
    while client.send_control(5, b"\0" * 40):
        sent += 1
        assert sent < 100
    assert "full" in client.last_error
    assert sent >= 3
    assert len(server.poll_control()) == sent
    assert client.send_control(6, b"again") is True  # room again after the poll
    assert [m["data"] for m in server.poll_control()] == [b"again"]


def test_control_ring_wraps_without_loss(name, make_server, make_client):
    server = make_server(name, control_per_reader=256)
    client = make_client(name)
    expected, got = [], []
    for k in range(300):
        body = bytes([k & 0xFF]) * (k % 37)
        while not client.send_control(1 + k % 50, body):
            got += server.poll_control()
        expected.append((1 + k % 50, body))
    got += server.poll_control()
    assert [(m["type"], m["data"]) for m in got] == expected


def test_no_control_rings(name, make_server, make_client):
    server = make_server(name, control_per_reader=0)
    client = make_client(name)
    assert client.send_control(5, b"x") is False and "control" in client.last_error
    assert server.poll_control() == []


def test_wait_control(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    assert server.wait_control(0.02) is False
    assert client.send_control_empty(3)
    assert server.wait_control(5.0) is True
    assert [m["type"] for m in server.poll_control()] == [3]

    def later():
        time.sleep(0.05)
        client.send_control(4, b"late")

    t = threading.Thread(target=later)
    t.start()
    try:
        assert server.wait_control(10.0) is True
    finally:
        t.join(10.0)
    assert server.poll_control()[0]["data"] == b"late"


# ---------------------------------------------------------------- readers

def test_snapshot_readers(name, make_server, make_client):
    server = make_server(name, reader_slots=4)
    readers = server.snapshot_readers()
    assert isinstance(readers, list) and len(readers) == 4
    assert all({"reader_id", "heartbeat", "last_frame_seen", "in_use"} <= set(r) for r in readers)
    assert not any(r["in_use"] for r in readers)
    c1, c2 = make_client(name), make_client(name)
    publish(server, b"x")
    publish(server, b"y")
    c2.get_latest_frame()
    now = time.monotonic_ns()
    used = {r["reader_id"]: r for r in server.snapshot_readers() if r["in_use"]}
    assert set(used) == {c1.reader_id, c2.reader_id}
    assert used[c2.reader_id]["last_frame_seen"] == 2
    assert used[c1.reader_id]["last_frame_seen"] == 0
    for r in used.values():
        assert type(r["heartbeat"]) is int and 0 < r["heartbeat"] <= now
        assert r["pid"] == os.getpid() and r["alive"] is True
    c1.close()
    used = [r["reader_id"] for r in server.snapshot_readers() if r["in_use"]]
    assert used == [c2.reader_id]


def test_reap_stale_readers_keeps_fresh_readers(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    publish(server, b"x")
    assert client.get_latest_frame() is not None  # a read is a heartbeat
    n = server.reap_stale_readers(time.monotonic_ns(), 10 ** 10)
    assert type(n) is int and n == 0
    assert server.get_header_info()["readers_connected"] == 1
    assert client.get_latest_frame() is not None
    assert server.reap_stale_readers("now", 0) == 0 and server.last_error


def test_reap_stale_readers_evicts_a_silent_reader(name, make_server, make_client):
    """The documented semantics: a reader whose heartbeat is older than the
    timeout is evicted even though its process lives; its pin goes, and its
    next call says so (it never reads a slot being rewritten)."""
    server = make_server(name, slots=1)
    client = make_client(name)
    publish(server, b"held")
    assert client.get_latest_frame() is not None
    # The only slot is pinned: the producer cannot start a frame.
    assert server.begin_frame() is None and "pinned" in server.last_error
    n = server.reap_stale_readers(time.monotonic_ns() + 10 ** 12, 10 ** 9)
    assert n == 1
    assert server.get_header_info()["readers_connected"] == 0
    rows = [r for r in server.snapshot_readers() if r["in_use"]]
    assert len(rows) == 1 and rows[0]["alive"] is True  # its slot, until it closes
    # Its pin is gone: the producer has its slot back.
    for i in range(4):
        publish(server, bytes([i]) * 4)
    assert client.read_next() is None and "evicted" in client.last_error
    assert client.get_latest_frame() is None and "evicted" in client.last_error
    assert client.wait_frame(0.05) is None and "evicted" in client.last_error
    client.close()
    assert not [r for r in server.snapshot_readers() if r["in_use"]]
    fresh = make_client(name)
    assert fresh.get_latest_frame()["__metadata__"]["frame_id"] == 5
    assert server.get_header_info()["readers_connected"] == 1


# ----------------------------------------------------------- publish, loan

def test_publish_dict(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    vec = np.arange(6, dtype=np.float32)
    assert server.publish({"a": b"abc", 2: struct.pack("<2I", 5, 6), "v": vec}, 2.5) is None
    frame = client.get_latest_frame()
    assert frame["__metadata__"]["sim_time"] == 2.5
    assert bytes(frame["a"]["data"]) == b"abc"
    assert frame["b"]["elem_count"] == 2 and frame["v"]["elem_count"] == 2
    assert np.array_equal(np.frombuffer(frame["v"]["data"], dtype=np.float32), vec)
    with pytest.raises(shmx.ShmxError, match="nope"):
        server.publish({"nope": b"x"})
    with pytest.raises(shmx.ShmxError, match="4-byte"):
        server.publish({2: b"abc"})
    with pytest.raises(ValueError):
        server.publish({99: b"x"})
    with pytest.raises(ValueError, match="frame_bytes_cap"):
        server.publish({"a": b"\0" * 70000})
    assert server.get_header_info()["frame_seq"] == 1  # refused frames were not published


def test_loan_writes_in_place(name, make_server, make_client):
    server = make_server(name)
    client = make_client(name)
    frame = server.begin_frame()
    view = server.loan(frame, 3, 2)
    assert isinstance(view, memoryview) and not view.readonly and view.nbytes == 24
    view[:] = np.arange(6, dtype=np.float32).tobytes()
    assert server.append_stream(frame, 1, b"z", 1)
    with pytest.raises(shmx.ShmxError, match="already"):
        server.loan(frame, 3, 1)
    with pytest.raises(shmx.ShmxError, match="schema"):
        server.loan(frame, 42, 1)
    assert server.publish_frame(frame, 0.0) is True
    with pytest.raises(ValueError):
        view[0] = 1  # released at publish: no writing into a published frame
    got = client.get_latest_frame()
    assert np.array_equal(np.frombuffer(got["v"]["data"], dtype=np.float32), np.arange(6, dtype=np.float32))
    with pytest.raises(shmx.ShmxError, match="finished"):
        server.loan(frame, 3, 1)


# -------------------------------------------------------------- inspector

def test_inspector(name, make_server, make_client):
    server = make_server(name, reader_slots=3)
    client = make_client(name)
    publish(server, b"inspect me", [1, 2], sim_time=4.0)
    client.get_latest_frame()
    insp = shmx.Inspector()
    try:
        assert insp.open(name) is True, insp.last_error
        report = insp.inspect()
        assert {"session_id", "static_gen", "frame_seq", "readers_connected", "streams",
                "readers"} <= set(report)
        assert report["session_id"] == server.get_header_info()["session_id"]
        assert report["frame_seq"] == 1 and report["readers_connected"] == 1
        assert [s["id"] for s in report["streams"]] == [1, 2, 3]
        assert report["streams"] == insp.get_streams_info() == client.get_streams_info()
        readers = insp.get_readers_info()
        assert isinstance(readers, list) and len(readers) == 3
        live = [r for r in readers if r["in_use"]]
        assert len(live) == 1 and live[0]["reader_id"] == client.reader_id
        assert live[0]["last_frame_seen"] == 1
        h = insp.get_header_info()
        assert isinstance(h, dict) and h["slots"] == 3 and h["readers_connected"] == 1
        copy = insp.copy_latest()
        assert copy["__metadata__"]["frame_id"] == 1 and copy["__metadata__"]["sim_time"] == 4.0
        assert copy["a"]["data"] == b"inspect me" and isinstance(copy["a"]["data"], bytes)
        assert copy["b"]["elem_count"] == 2
        # Inspecting took no reader slot and wrote nothing.
        assert server.get_header_info()["readers_connected"] == 1
        publish(server, b"second")
        assert insp.copy_latest()["a"]["data"] == b"second"
        assert insp.inspect()["frame_seq"] == 2
    finally:
        insp.close()
    assert insp.inspect() == {}
    insp.close()


def test_inspector_context_manager(name, make_server):
    make_server(name)
    with shmx.Inspector() as insp:
        assert insp.open(name)
        assert insp.copy_latest() is None and "no frame" in insp.last_error
    assert insp.get_header_info() == {}
