"""The demo schema shared by the C, Go, Julia and Python demo programs
(examples/c/README.md), and helpers to run those programs from tests.

Frame k: seq (uint64) = k; pixels (uint8) byte i = (k + i) % 251;
stamp (float64) = k / 1000 = sim_time.  Control messages: "ping 0", ...
"""
from __future__ import annotations

import struct
import subprocess
import time
from typing import Dict, List, Sequence

import shmx


def pattern(k: int, n: int, _cache: Dict[int, bytes] = {}) -> bytes:
    """The pixels of frame k (n bytes)."""
    base = _cache.get(n)
    if base is None:
        base = _cache[n] = bytes(i % 251 for i in range(n + 251))
    start = k % 251
    return base[start:start + n]


def demo_streams() -> list:
    return [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
            shmx.create_stream_spec(2, "pixels", shmx.DT_U8, 1, 1),
            shmx.create_stream_spec(3, "stamp", shmx.DT_F64, 1, 8)]


def check_frame(frame: dict) -> int:
    """The frame's seq k, after checking every byte against the schema."""
    k = int.from_bytes(frame["seq"]["data"], "little")
    px = frame["pixels"]
    assert px["elem_count"] == px["bytes"] == len(px["data"])
    assert px["data"] == pattern(k, px["bytes"]), f"pixels of frame {k} differ"
    (stamp,) = struct.unpack("<d", frame["stamp"]["data"])
    assert stamp == k / 1000.0 == frame["__metadata__"]["sim_time"]
    return k


def publish_all(server: shmx.Server, frames: int, nbytes: int) -> List[dict]:
    """Publish demo frames 1..frames at about 1 kHz; returns the control
    messages polled meanwhile."""
    messages: List[dict] = []
    k = 1
    deadline = time.monotonic() + 30
    while k <= frames and time.monotonic() < deadline:
        try:
            server.publish({"seq": k.to_bytes(8, "little"), "pixels": pattern(k, nbytes),
                            "stamp": struct.pack("<d", k / 1000.0)}, sim_time=k / 1000.0)
        except shmx.BusyError:  # the consumer pins every slot for a moment
            time.sleep(0.0005)
            continue
        k += 1
        messages += server.poll_control()
        time.sleep(0.001)
    assert k == frames + 1, f"published only {k - 1} frames"
    return messages


def read_all(client: shmx.Client, frames: int, timeout: float = 30) -> List[int]:
    """Read demo frames in order until seq == frames; returns the seqs read
    (checking each one, and that read + dropped covers every frame)."""
    seen: List[int] = []
    dropped = 0
    deadline = time.monotonic() + timeout
    while (not seen or seen[-1] < frames) and time.monotonic() < deadline:
        frame = client.wait_next(timeout=0.5)
        if frame is None:
            continue
        k = check_frame(frame)
        assert not seen or k == seen[-1] + 1 + frame["__metadata__"]["dropped"]
        dropped += frame["__metadata__"]["dropped"]
        seen.append(k)
    assert seen and seen[-1] == frames, f"last frame read: {seen[-1:]}"
    assert len(seen) + dropped == frames - seen[0] + 1
    return seen


def wait_readers(server: shmx.Server, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while server.get_header_info()["readers_connected"] < n:
        assert proc.poll() is None, finish(proc).stderr
        assert time.monotonic() < deadline, "the consumer did not attach"
        time.sleep(0.005)


def start(cmd: Sequence[object], env: Dict[str, str] = None) -> subprocess.Popen:
    import os
    return subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, **env) if env else None)


def finish(proc: subprocess.Popen, timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not finish in {timeout} s\n{out}\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
