"""shmx bridge: regions carried over Zenoh, end to end.

Every test runs ``shmx bridge out`` and ``shmx bridge in`` as separate
processes (separate Zenoh sessions) on tcp/127.0.0.1 with multicast
scouting off, on ports picked at run time; the source producer and the
mirror's consumer are the test process or children of it.  Frames are
checked byte for byte against patterns derived from their sequence number.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import shmx
from _helpers import Child, wait_until

pytest.importorskip("zenoh", reason="the bridge needs eclipse-zenoh (pip install 'shmx[bridge]')")

ROOT = Path(__file__).resolve().parent.parent
W, H = 1920, 1080
VIDEO = W * H * 3
SPECS = [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
         shmx.create_stream_spec(2, "blob", shmx.DT_U8, 1, 1),
         shmx.create_stream_spec(3, "video", shmx.DT_U8, 3, 3)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_blob(seq: int) -> bytes:
    n = 1 + (seq * 37) % 200
    return bytes(((seq * 31 + i * 7) & 0xFF) for i in range(n))


_BASE: Any = None


def video(seq: int) -> Any:
    import numpy as np
    global _BASE
    if _BASE is None:
        _BASE = np.random.default_rng(7).integers(0, 256, size=VIDEO + 4096, dtype=np.uint8)
    off = (seq * 4099) % 4096
    return np.bitwise_xor(_BASE[off:off + VIDEO], np.uint8(seq & 0xFF))


def publish_small(server: shmx.Server, seq: int) -> None:
    server.publish({1: struct.pack("<Q", seq), 2: small_blob(seq)}, sim_time=seq * 0.5)


def check(frame: Dict[str, Any], big: bool = False) -> int:
    """Assert every byte of a mirrored frame; returns its seq."""
    import numpy as np
    md = frame["__metadata__"]
    seq = struct.unpack("<Q", frame["seq"]["data"])[0]
    assert md["sim_time"] == seq * 0.5, md
    if big:
        assert frame["video"]["elem_count"] == W * H
        assert np.array_equal(np.frombuffer(frame["video"]["data"], np.uint8), video(seq)), f"frame {seq}"
    else:
        assert bytes(frame["blob"]["data"]) == small_blob(seq), f"frame {seq}"
        assert frame["blob"]["elem_count"] == len(small_blob(seq))
    return seq


class Bridge:
    """A ``shmx bridge`` process; stderr goes to a file (read on failure)."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.log = tmp / f"bridge-{args[0]}-{time.monotonic_ns()}.log"
        self._f = open(self.log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "shmx", "bridge", *args, "--no-multicast", "--json"],
                                     stdout=subprocess.PIPE, stderr=self._f, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, wanted: str, timeout: float = 30.0) -> None:
        assert wait_until(lambda: wanted in self.text() or self.proc.poll() is not None, timeout), \
            f"no {wanted!r} in the bridge log: {self.text()}"
        assert wanted in self.text(), f"bridge exited {self.proc.returncode}: {self.text()}"

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def stop(self) -> str:
        """SIGTERM (a clean end); returns its stdout (the statistics)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill9()
            out = b""
        self._f.close()
        return out.decode()


@pytest.fixture
def bridges(tmp_path: Path):
    made: List[Bridge] = []
    # Zenoh's own shared-memory files: a bridge killed with SIGKILL cannot
    # remove its own, so whatever the bridges of this test left is removed.
    zenoh_files = set(glob.glob("/dev/shm/*.zenoh"))

    def start(*args: str) -> Bridge:
        b = Bridge(tmp_path, *args)
        made.append(b)
        return b
    yield start
    for b in made:
        b.stop()
    for f in set(glob.glob("/dev/shm/*.zenoh")) - zenoh_files:
        with contextlib.suppress(OSError):
            os.unlink(f)


def start_pair(bridges: Any, source: str, mirror: str, delivery: str, port: int, key: str) -> tuple:
    """bridge in (listening) and bridge out (connecting): the side that is
    restarted connects again by itself."""
    bin_ = bridges("in", key, "--as", mirror, "--listen", f"tcp/127.0.0.1:{port}", "--delivery", delivery)
    bout = bridges("out", source, "--key", key, "--connect", f"tcp/127.0.0.1:{port}", "--delivery", delivery)
    return bin_, bout


def warm_up(server: shmx.Server, client: shmx.Client, timeout: float = 30.0) -> int:
    """Publish small frames until the mirror shows one (frames published
    before the Zenoh link is up reach nobody); returns the next seq."""
    end = time.monotonic() + timeout
    seq = 1
    while time.monotonic() < end:
        publish_small(server, seq)
        seq += 1
        f = client.wait_next(0.1)
        if f is not None:
            while f is not None:
                assert check(f) == f["__metadata__"]["frame_id"]
                last = f["__metadata__"]["frame_id"]
                f = client.wait_next(0.3)
            assert last == seq - 1
            return seq
    raise AssertionError(f"the mirror showed no frame within {timeout} s: {client.last_error}")


def read_one(client: shmx.Client, timeout: float = 20.0) -> Dict[str, Any]:
    """The next frame in order, waiting (bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        f = client.wait_next(0.2)
        if f is not None:
            return f
    raise AssertionError(f"no frame within {timeout} s: {client.last_error}")


@pytest.mark.parametrize("delivery", ["latest", "reliable"])
def test_every_byte_of_small_and_1080p_frames(delivery: str, unique_name: Any, bridges: Any) -> None:
    source, mirror, port = unique_name("bsrc"), unique_name("bmir"), free_port()
    key = f"shmxtest/{mirror}"
    with shmx.serve(source, SPECS, slots=4, frame_bytes_cap=VIDEO + 1024) as server:
        bin_, bout = start_pair(bridges, source, mirror, delivery, port, key)
        client = shmx.connect(mirror, timeout=30)
        try:
            assert client.get_streams_info() == server.get_streams_info()
            first = warm_up(server, client)
            # Each frame once the mirror showed the previous one: all 1,000
            # arrive even best effort, and ids, sim_time, bytes are the source's.
            for seq in range(first, first + 1000):
                publish_small(server, seq)
                f = read_one(client)
                assert f["__metadata__"]["frame_id"] == seq and f["__metadata__"]["dropped"] == 0
                assert check(f) == seq
            for seq in range(first + 1000, first + 1100):
                server.publish({1: struct.pack("<Q", seq), 3: video(seq)}, sim_time=seq * 0.5)
                f = read_one(client)
                assert f["__metadata__"]["frame_id"] == seq
                assert check(f, big=True) == seq
            assert client.server_alive() is True
        finally:
            client.close()
        stats = json.loads(bout.stop().strip().splitlines()[-1])
        assert stats["frames"] >= 1099 and stats["dropped"] == 0, stats
    del bin_


def test_reliable_carries_exact_dropped_counts(unique_name: Any, bridges: Any) -> None:
    """The bridge is stalled (SIGSTOP: a slow consumer of the source) while
    the producer goes on; the source ring overwrites frames the bridge never
    read, and the mirror's read_next reports exactly those gaps."""
    source, mirror, port = unique_name("bsrc"), unique_name("bmir"), free_port()
    key = f"shmxtest/{mirror}"
    slots = 4
    with shmx.serve(source, SPECS[:2], slots=slots) as server:
        bin_, bout = start_pair(bridges, source, mirror, "reliable", port, key)
        client = shmx.connect(mirror, timeout=30)
        try:
            first = warm_up(server, client)
            for seq in range(first, first + 10):
                publish_small(server, seq)
                assert read_one(client)["__metadata__"]["frame_id"] == seq
            held = first + 9
            # the bridge has read frame `held` and holds it; stall it
            assert wait_until(lambda: any(r["last_frame_seen"] == held for r in server.snapshot_readers()
                                          if r["in_use"]), 10)
            before = [r["frames_dropped"] for r in server.snapshot_readers() if r["in_use"]]
            bout.proc.send_signal(signal.SIGSTOP)
            try:
                for seq in range(held + 1, held + 51):
                    publish_small(server, seq)
            finally:
                bout.proc.send_signal(signal.SIGCONT)
            got = []
            while not got or got[-1][0] < held + 50:
                f = read_one(client)
                md = f["__metadata__"]
                assert check(f) == md["frame_id"]
                got.append((md["frame_id"], md["dropped"]))
            # the ring kept frame `held` (pinned by the bridge) and the last
            # slots - 1 frames: the 50 - (slots - 1) = 47 before them were
            # lost, and the lapped bridge passes over a quarter of the ring
            # (slots // 4 = 1 frame) more (csrc/client.c, client_next)
            lost = 50 - (slots - 1) + slots // 4
            last = held + 50
            assert got == [(last - 1, lost), (last, 0)]
            assert before == [0]
            bridge_reader = [r for r in server.snapshot_readers() if r["in_use"] and r["pid"] == bout.proc.pid]
            assert [r["frames_dropped"] for r in bridge_reader] == [lost]
        finally:
            client.close()
        out = bout.stop()
        stats = json.loads(out.strip().splitlines()[-1]) if out.strip().startswith("{") else None
        assert stats is not None and stats["dropped"] == lost, out
        # the three frames waiting when the bridge woke went as one batch
        assert stats["batches"] >= 1, out
    del bin_


PRODUCER = """
    import struct, time, shmx
    name, first = sys.argv[1], int(sys.argv[2])
    specs = [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
             shmx.create_stream_spec(2, "blob", shmx.DT_U8, 1, 1)]
    s = shmx.serve(name, specs, slots=8)
    def blob(seq):
        n = 1 + (seq * 37) % 200
        return bytes(((seq * 31 + i * 7) & 0xFF) for i in range(n))
    print("ready", flush=True)
    seq = first
    while True:
        s.publish({1: struct.pack("<Q", seq), 2: blob(seq)}, sim_time=seq * 0.5)
        seq += 1
        time.sleep(0.005)
"""


def next_live_frame(client: shmx.Client, timeout: float = 30.0) -> Dict[str, Any]:
    """What a long-running consumer does: keep calling wait_frame(), which
    returns None while the server is gone and follows a new one."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        f = client.wait_frame(0.2)
        if f is not None:
            return f
        time.sleep(0.01)
    raise AssertionError(f"no live frame within {timeout} s: {client.last_error}")


def mirror_state(mirror: str) -> Dict[str, Any]:
    """The mirror as `shmx ls --json` reports it."""
    out = subprocess.run([sys.executable, "-m", "shmx", "ls", "--json"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    return {r["name"]: r for r in json.loads(out.stdout)}.get(mirror, {})


def test_source_and_bridge_kill9_are_seen_and_followed(unique_name: Any, bridges: Any,
                                                       request: Any) -> None:
    source, mirror, port = unique_name("bsrc"), unique_name("bmir"), free_port()
    key = f"shmxtest/{mirror}"
    producer = Child(PRODUCER, source, "1")
    producers = [producer]
    try:
        producer.wait_for("ready")
        bin_, bout = start_pair(bridges, source, mirror, "latest", port, key)
        client = shmx.connect(mirror, timeout=30)
        try:
            f = next_live_frame(client)
            check(f)
            assert client.server_alive() is True and mirror_state(mirror)["owner"] == "alive"

            # 1. the source's server is killed: the mirror reports its server gone
            producer.kill9()
            assert wait_until(lambda: client.server_alive() is False, 20), bin_.text()
            assert wait_until(lambda: client.wait_frame(0.2) is None, 10)  # frames already there first
            assert mirror_state(mirror)["owner"] == "dead"
            # a new producer on the name (it reclaims the stale region) is followed
            producer = Child(PRODUCER, source, "100000")
            producers.append(producer)
            f = next_live_frame(client)
            assert check(f) >= 100000 and client.server_alive() is True

            # 2. the bridge out is killed: liveliness tells the far side
            bout.kill9()
            assert wait_until(lambda: client.server_alive() is False, 20), bin_.text()
            assert mirror_state(mirror)["owner"] == "dead"
            # The closed mirror's frames come first, as in step 1: a frame
            # from them is no sign of the new bridge (the client follows the
            # new mirror only once they are read).
            assert wait_until(lambda: client.wait_frame(0.2) is None, 10)
            bout = bridges("out", source, "--key", key, "--connect", f"tcp/127.0.0.1:{port}")
            f = next_live_frame(client)
            check(f)
            assert client.server_alive() is True

            # 3. the bridge in (the mirror's own server) is killed, then restarted
            bin_.kill9()
            assert wait_until(lambda: client.server_alive() is False, 20)
            assert mirror_state(mirror)["owner"] == "dead"
            bin_ = bridges("in", key, "--as", mirror, "--listen", f"tcp/127.0.0.1:{port}")
            f = next_live_frame(client, timeout=45)
            check(f)
            assert client.server_alive() is True
        finally:
            client.close()
    finally:
        for p in producers:
            p.close()
        # the killed producer's region was reclaimed by the second one; the
        # second is killed too, so its region is stale now
        request.node.allow_leftovers = True


def test_schema_append_reaches_the_mirror(unique_name: Any, bridges: Any, tmp_path: Path) -> None:
    source, mirror, port = unique_name("bsrc"), unique_name("bmir"), free_port()
    key = f"shmxtest/{mirror}"
    # the far side configured by a Zenoh JSON5 file (comments and all)
    cfg = tmp_path / "zenoh.json5"
    cfg.write_text("{\n  // the mirror's side\n  mode: 'peer',\n"
                   f"  listen: {{ endpoints: ['tcp/127.0.0.1:{port}'] }},\n"
                   "  scouting: { multicast: { enabled: false } },\n}\n")
    with shmx.serve(source, SPECS[:2], slots=4) as server:
        bin_ = bridges("in", key, "--as", mirror, "--config", str(cfg), "--delivery", "reliable")
        bout = bridges("out", source, "--key", key, "--connect", f"tcp/127.0.0.1:{port}",
                       "--delivery", "reliable")
        client = shmx.connect(mirror, timeout=30)
        try:
            nxt = warm_up(server, client)
            # a stream descriptor made by another region, appended raw, then raw bytes
            with shmx.serve(unique_name("tmp"), [shmx.create_stream_spec(7, "temp", shmx.DT_F32, 1, 4)]) as t, \
                    shmx.connect(t.name) as tc:
                desc = tc.get_static_bytes()
            assert server.write_static_append(desc) and server.write_static_append(b"\x5a" * 32)
            server.publish({1: struct.pack("<Q", nxt), 7: struct.pack("<f", 21.5)}, sim_time=1.0)
            f = read_one(client)
            assert f["__metadata__"]["frame_id"] == nxt
            assert client.refresh_static()
            with shmx.connect(source) as sc:
                assert client.get_static_bytes() == sc.get_static_bytes()
                assert client.get_streams_info() == sc.get_streams_info()
            f = client.get_latest_frame()
            assert struct.unpack("<f", f["temp"]["data"])[0] == 21.5
        finally:
            client.close()
    del bin_, bout


def test_import_shmx_does_not_import_zenoh() -> None:
    code = ("import sys, shmx, shmx.cli; shmx.cli.build_parser(); "
            "assert 'zenoh' not in sys.modules and 'shmx.bridge' not in sys.modules, "
            "sorted(m for m in sys.modules if 'zenoh' in m or 'bridge' in m)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr


def test_bad_arguments_are_clear_errors() -> None:
    from shmx import bridge
    with pytest.raises(ValueError, match="key must be"):
        bridge.BridgeOut("cam", "a/*/b", multicast_scouting=False)
    with pytest.raises(ValueError, match="delivery must be"):
        bridge.BridgeOut("cam", "a/b", delivery="fast", multicast_scouting=False)
    with pytest.raises(ValueError, match="name"):
        bridge.BridgeIn("a/b", "bad name!", multicast_scouting=False)
    with pytest.raises(ValueError, match="listen: endpoint"):
        bridge.zenoh_config(listen=["127.0.0.1"])
    with pytest.raises(ValueError, match="zenoh config file"):
        bridge.zenoh_config("/nonexistent/zenoh.json5")
    out = subprocess.run([sys.executable, "-m", "shmx", "bridge", "in", "a/b", "--as", "x",
                          "--listen", "tcp/127.0.0.1:notaport", "--no-multicast"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("shmx"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
