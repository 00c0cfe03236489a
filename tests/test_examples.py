"""Every documented example (examples/*.py) runs, bounded, as a real program.

Each script runs as a subprocess with a short run length and a unique region
name (the ``unique_name`` fixture fails the test if the region is left in
the shared-memory directory).  Checks are on the exit code and on the lines
a user would read: frames arrive, and the values in them are right.
"""
from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List

import pytest

import shmx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60  # seconds for any one example; a hang fails, it never blocks CI
SCRIPTS = ["video_frames.py", "sensors_control.py", "numpy_particles.py", "inspector.py",
           "multi_process.py", "live_demo.py"]


def run_example(script: str, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout, env=env)
    return proc


def output(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def test_video_frames(unique_name: Callable[[str], str]) -> None:
    """Example 1: 1920x1080 RGB frames with frame_bytes_cap=1920*1080*3,
    consumer in another process."""
    name = unique_name("video")
    proc = run_example("video_frames.py", "--frames", "20", "--fps", "30", "--name", name)
    out = output(proc)
    assert proc.returncode == 0, out
    received = re.findall(r"^Received frame (\d+): (\d+)x(\d+)$", proc.stdout, re.M)
    assert received, out
    assert all((w, h) == ("1920", "1080") for _, w, h in received), out
    ids = [int(i) for i, _, _ in received]
    assert ids == sorted(set(ids)), out  # each frame once, in order
    assert ids[-1] == 20, out
    assert "Server: published 20 frames" in proc.stdout, out
    assert re.search(r"^Client: received \d+ frames, last frame id 20$", proc.stdout, re.M), out
    assert "refused" not in proc.stdout, out


def test_sensors_control(unique_name: Callable[[str], str]) -> None:
    """Example 2: readings arrive with consistent values, the rate request
    and the reset reach the server, attributed to the client that sent them."""
    name = unique_name("sensors")
    proc = run_example("sensors_control.py", "--frames", "200", "--reads", "30", "--name", name)
    out = output(proc)
    assert proc.returncode == 0, out
    assert "Streams: [" in proc.stdout and "'temperature'" in proc.stdout, out
    rate = re.search(r"^Reader (\d+) set rate to 100\.0 Hz$", proc.stdout, re.M)
    reset = re.search(r"^Reader (\d+) requested reset$", proc.stdout, re.M)
    assert rate and reset, out
    assert rate.group(1) == reset.group(1) != "0", out
    readings = re.findall(r"^T=([\d.]+)°C P=([\d.]+)hPa H=([\d.]+)%$", proc.stdout, re.M)
    assert len(readings) >= 10, out
    for t, p, h in readings:
        # Frame i carries 25 + 0.1 i, 1013.25 + 0.01 i, 45 + 0.05 i (float32,
        # printed rounded): all three must belong to the same i.
        i = round((float(p) - 1013.25) / 0.01)
        assert abs(float(t) - (25.0 + 0.1 * i)) <= 0.06, (t, p, h)
        assert abs(float(h) - (45.0 + 0.05 * i)) <= 0.06, (t, p, h)
    assert re.search(r"^Active readers: 1$", proc.stdout, re.M), out
    assert "Server: published 200 frames" in proc.stdout, out


def test_numpy_particles(unique_name: Callable[[str], str]) -> None:
    """Example 3: every frame read back through numpy views is exactly what
    was published."""
    name = unique_name("particles")
    proc = run_example("numpy_particles.py", "--frames", "20", "--interval", "0.002", "--name", name)
    out = output(proc)
    assert proc.returncode == 0, out
    assert len(re.findall(r"^Frame \d+: 1000 particles$", proc.stdout, re.M)) == 20, out
    assert re.search(r"^ Position range: \[-\d+\.\d\d, \d+\.\d\d\]$", proc.stdout, re.M), out
    assert "Read back 20 of 20 frames intact" in proc.stdout, out


def test_inspector_on_live_server(unique_name: Callable[[str], str]) -> None:
    """Example 4 against a server (with one reader) living in this process."""
    name = unique_name("inspect")
    streams = [
        shmx.create_stream_spec(1, "frame_id", shmx.DT_U64, 1, 8),
        shmx.create_stream_spec(2, "pos", shmx.DT_F32, 3, 12, shmx.LAYOUT_AOS_VECTOR),
    ]
    with shmx.Server() as server, shmx.Client() as client:
        assert server.create(name, streams=streams), server.last_error
        assert client.open(name), client.last_error
        for i in range(3):
            frame = server.begin_frame()
            assert server.append_stream(frame, 1, struct.pack("<Q", i), 1), server.last_error
            assert server.append_stream(frame, 2, struct.pack("<3f", 1, 2, 3), 1), server.last_error
            assert server.publish_frame(frame, float(i)), server.last_error
        assert client.get_latest_frame() is not None
        session = server.get_header_info()["session_id"]
        proc = run_example("inspector.py", name)
        reader_id = client.reader_id
    out = output(proc)
    assert proc.returncode == 0, out
    expected = [
        f"=== Stream Inspection: {name} ===",
        f"Session ID: {session}",
        "Frame Sequence: 3",
        "Readers Connected: 1",
        "Static Generation: 1",
        " [1] frame_id", " Type: uint64 x 1", " Layout: scalar", " Bytes/elem: 8",
        " [2] pos", " Type: float32 x 3", " Layout: vector", " Bytes/elem: 12",
        f" Reader {reader_id}", " Last frame: 3",
    ]
    lines = proc.stdout.splitlines()
    for line in expected:
        assert line in lines, f"missing {line!r}\n{out}"
    assert re.search(r"^ Heartbeat: [1-9]\d*$", proc.stdout, re.M), out


def test_inspector_demo_and_missing_region(unique_name: Callable[[str], str]) -> None:
    name = unique_name("inspdemo")
    proc = run_example("inspector.py", "--demo", name)
    out = output(proc)
    assert proc.returncode == 0, out
    assert f"=== Stream Inspection: {name} ===" in proc.stdout, out
    assert "Frame Sequence: 5" in proc.stdout and " Last frame: 5" in proc.stdout, out

    missing = unique_name("absent")
    proc = run_example("inspector.py", missing)
    assert proc.returncode == 1, output(proc)
    assert f"Failed to open stream '{missing}'" in proc.stdout, output(proc)


def test_multi_process(unique_name: Callable[[str], str]) -> None:
    """Example 5: one producer, three consumer processes; each consumer gets
    frames whose value is counter * 3.14."""
    name = unique_name("multi")
    proc = run_example("multi_process.py", "--frames", "20", "--interval", "0.02", "--name", name)
    out = output(proc)
    assert proc.returncode == 0, out
    assert f"Producer: Started on '{name}'" in proc.stdout, out
    for cid in range(3):
        assert f"Consumer {cid}: Connected to '{name}'" in proc.stdout, out
        got = re.search(rf"^Consumer {cid}: Received (\d+) frames$", proc.stdout, re.M)
        assert got and int(got.group(1)) > 0, out
        values = re.findall(rf"^Consumer {cid}: counter=(\d+), value=([\d.]+)$", proc.stdout, re.M)
        assert len(values) == int(got.group(1)), out
        counters = [int(c) for c, _ in values]
        assert counters == sorted(counters) and max(counters) < 20, out
        for c, v in values:
            assert v == f"{int(c) * 3.14:.2f}", out
    assert "Producer: Done" in proc.stdout, out
    assert proc.stdout.rstrip().endswith("All processes completed"), out


def _summary_numbers(stdout: str) -> List[int]:
    got = re.search(r"^Consumer: received (\d+) frames", stdout, re.M)
    checked = re.search(r"verified (\d+) frames byte for byte, (\d+) bad$", stdout, re.M)
    assert got and checked, stdout
    return [int(got.group(1)), int(checked.group(1)), int(checked.group(2))]


def test_live_demo(unique_name: Callable[[str], str]) -> None:
    """The live demo: frames flow, every byte checks out, progress lines and
    a summary are printed, and nothing is left behind."""
    name = unique_name("live")
    proc = run_example("live_demo.py", "--seconds", "2", "--fps", "200", "--name", name)
    out = output(proc)
    assert proc.returncode == 0, out
    received, verified, bad = _summary_numbers(proc.stdout)
    assert received > 0 and verified == received and bad == 0, out
    assert re.search(r"^frames +\d+ \| +[\d.]+ fps \| +[\d.]+ MB/s \| latency +[\d.]+ us \| "
                     r"dropped +\d+ \| bad 0$", proc.stdout, re.M), out
    assert re.search(r"^Consumer: latency publish->receive: mean [\d.]+ us", proc.stdout, re.M), out
    assert re.search(r"^Producer: published \d+ frames", proc.stdout, re.M), out
    assert "Cleanup: nothing left in" in proc.stdout, out


def test_live_demo_ctrl_c(unique_name: Callable[[str], str]) -> None:
    """Ctrl-C (SIGINT to the demo) stops both processes, prints the summary
    and leaves nothing in the shared-memory directory."""
    name = unique_name("livec")
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "live_demo.py"), "--seconds", "60",
                             "--fps", "200", "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8", env=env)
    try:
        # Wait until frames are flowing (the first progress line), then interrupt.
        assert proc.stdout is not None
        seen: List[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("frames "):
                break
        assert any(line.startswith("frames ") for line in seen), "".join(seen)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stdout = "".join(seen) + rest
    out = f"exit {proc.returncode}\n{stdout}\n--- stderr\n{err}"
    assert proc.returncode == 130, out
    received, verified, bad = _summary_numbers(stdout)
    assert received > 0 and bad == 0, out
    assert "Producer: interrupted" in stdout, out
    assert "Cleanup: nothing left in" in stdout, out
    assert "Traceback" not in err, out
    assert not [f for f in os.listdir(shmx.default_shm_dir()) if f.startswith(name)], out


def test_examples_index_lists_every_script() -> None:
    index = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for script in SCRIPTS:
        assert (EXAMPLES / script).is_file(), script
        assert f"examples/{script}" in index, f"{script} is not in examples/README.md"


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_help(script: str) -> None:
    """Every example documents its options (and parses them without running)."""
    proc = run_example(script, "--help", timeout=30)
    assert proc.returncode == 0, output(proc)
    assert "name" in proc.stdout, output(proc)
