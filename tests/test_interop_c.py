"""C and Python peers on one region, in both directions: a C producer read
by a Python consumer and a Python producer read by the C consumer, every
byte checked; control messages from a C client to a Python server and from
a Python client to a C server.

The C side is examples/c (built with pkg-config against a temporary
``make install``); both sides use the demo schema of examples/c/README.md:
seq (uint64), pixels (uint8, byte i of frame k = (k + i) % 251), stamp
(float64 = k / 1000 = sim_time).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

import shmx
from _clib import c_examples
from _demo import check_frame, demo_streams, finish, publish_all, read_all, start, wait_readers

FRAMES = 300
PIXELS = 20000


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return c_examples(tmp_path_factory)


# ------------------------------------------------------------ C -> Python

def test_c_producer_python_consumer(bins: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("ic1")
    prod = start([bins / "producer", "--name", name, "--frames", FRAMES, "--bytes", PIXELS,
                  "--rate", "1000", "--wait-readers", "1"])
    try:
        client = shmx.connect(name, timeout=10)
    except Exception:
        prod.kill()
        raise
    try:
        info = {s["name"]: s for s in client.get_streams_info()}
        assert info["pixels"]["dtype"] == "uint8" and info["seq"]["bytes_per_elem"] == 8
        assert info["stamp"]["dtype"] == "float64"
        seen = read_all(client, FRAMES)
    finally:
        client.close()
    p = finish(prod)
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(seen) > FRAMES // 2, f"only {len(seen)} of {FRAMES} frames read"


# ------------------------------------------------------------ Python -> C

def test_python_producer_c_consumer_and_control_to_python(bins: Path,
                                                           unique_name: Callable[[str], str]) -> None:
    name = unique_name("ic2")
    server = shmx.serve(name, demo_streams(), slots=4, frame_bytes_cap=PIXELS + 16)
    try:
        cons = start([bins / "consumer", "--name", name, "--frames", FRAMES, "--send-control", "5",
                      "--quiet", "--timeout-ms", "20000"])
        wait_readers(server, 1, cons)
        messages = publish_all(server, FRAMES, PIXELS)
        c = finish(cons)
        deadline = time.monotonic() + 5
        while len(messages) < 5 and time.monotonic() < deadline:
            server.wait_control(0.1)
            messages += server.poll_control()
    finally:
        server.destroy()
    assert c.returncode == 0, c.stdout + c.stderr
    assert "0 bad frames, 0 bad values" in c.stdout and f"..{FRAMES})" in c.stdout, c.stdout
    # Control messages from the C client, in order, from one reader.
    assert [m["data"] for m in messages] == [f"ping {i}".encode() for i in range(5)]
    assert {m["type"] for m in messages} == {shmx.TLV_CONTROL_USER}
    assert len({m["reader_id"] for m in messages}) == 1 and messages[0]["reader_id"] != 0


def test_python_client_controls_c_server(bins: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("ic3")
    prod = start([bins / "producer", "--name", name, "--frames", "100", "--rate", "500",
                  "--wait-readers", "1", "--expect-control", "6"])
    client = shmx.connect(name, timeout=10)
    try:
        for i in range(6):
            deadline = time.monotonic() + 5
            while not client.send_control(shmx.TLV_CONTROL_USER, f"ping {i}".encode()):
                assert time.monotonic() < deadline, client.last_error
                time.sleep(0.001)
        # Also read what the C server publishes meanwhile.
        last = 0
        deadline = time.monotonic() + 20
        while last < 100 and time.monotonic() < deadline:
            frame = client.wait_next(timeout=0.5)
            if frame is not None:
                last = check_frame(frame)
    finally:
        client.close()
    p = finish(prod)
    assert p.returncode == 0, p.stdout + p.stderr
    assert last == 100
    for i in range(6):
        assert f"type 0x3000 'ping {i}'" in p.stdout, p.stdout
    assert "unexpected" not in p.stdout and "6 control messages" in p.stdout


def test_python_inspector_sees_c_producer(bins: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("ic4")
    prod = start([bins / "producer", "--name", name, "--frames", "1000000", "--rate", "200"])
    try:
        deadline = time.monotonic() + 10
        insp = shmx.Inspector()
        while not insp.open(name):
            assert time.monotonic() < deadline, insp.last_error
            time.sleep(0.01)
        try:
            while insp.get_header_info()["frame_seq"] < 3:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            h = insp.get_header_info()
            assert h["owner_pid"] == prod.pid and h["owner_alive"] is True and h["extended"]
            assert [s["name"] for s in insp.get_streams_info()] == ["seq", "pixels", "stamp"]
        finally:
            insp.close()
    finally:
        prod.send_signal(2)
        p = finish(prod)
    assert p.returncode == 130
