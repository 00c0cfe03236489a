"""Waiting, in-order reads, zero-copy publish, numpy, Pythonic forms, asyncio:
each across real processes where the feature is about processes."""
from __future__ import annotations

import asyncio
import functools
import gc
import multiprocessing as mp
import os
import signal
import struct
import subprocess
import sys
import time
import weakref
import warnings

import pytest

import shmx

np = pytest.importorskip("numpy")
SPAWN = mp.get_context("spawn")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def specs():
    return [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
            shmx.create_stream_spec(2, "pos", shmx.DT_F32, 3, 12),
            shmx.create_stream_spec(3, "img", shmx.DT_U8, 1, 1)]


def _publish_later(name: str, delay: float, values: list) -> None:
    """Child: create the region after `delay`, publish `values`, leave."""
    time.sleep(delay)
    server = shmx.serve(name, specs())
    try:
        for v in values:
            server.publish({"seq": struct.pack("<Q", v)}, sim_time=float(v))
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        server.destroy()


def _asleep_in_futex(pid: int) -> bool:
    task = f"/proc/{pid}/task/{pid}"
    if not os.path.isdir(task):  # no /proc (Windows): give it time to go to sleep
        time.sleep(0.2)
        return True
    with open(task + "/wchan") as f:
        wchan = f.read()
    with open(task + "/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    return state == "S" and "futex" in wchan


def _producer_on_cue(name: str, ready, waiting, done, consumer: int) -> None:
    server = shmx.serve(name, specs())
    try:
        ready.set()
        assert waiting.wait(10)
        # Publish only once the consumer's thread sleeps in the kernel, on
        # the futex (not in a poll loop, not still on its way there).
        deadline = time.monotonic() + 10
        while not _asleep_in_futex(consumer):
            assert time.monotonic() < deadline, "the consumer never slept on its futex"
            time.sleep(0.001)
        server.publish({"seq": struct.pack("<Q", 7)})
        assert done.wait(10)
    finally:
        server.destroy()


def test_wait_frame_woken_by_producer_in_other_process(name):
    ready, waiting, done = SPAWN.Event(), SPAWN.Event(), SPAWN.Event()
    proc = SPAWN.Process(target=_producer_on_cue, args=(name, ready, waiting, done, os.getpid()))
    proc.start()
    try:
        assert ready.wait(20)
        with shmx.connect(name) as client:
            assert client.wait_frame(timeout=0.05) is None  # nothing yet: times out
            waiting.set()
            frame = client.wait_frame(timeout=10)  # sleeps until the other process publishes
            assert frame is not None
            assert struct.unpack("<Q", frame["seq"]["data"])[0] == 7
        done.set()
    finally:
        done.set()
        proc.join(20)
    assert proc.exitcode == 0


def _ask_over_control(name: str, delay: float, values: list) -> None:
    """Child: a consumer asking the producer for values over control."""
    time.sleep(delay)
    with shmx.connect(name, timeout=5) as c:
        for v in values:
            assert c.send_control(0x7, struct.pack("<Q", v))


def test_wait_control_and_wait_frame_round_trip(name):
    """A consumer process asks (control), the producer waits for it with
    wait_control and answers with a frame the consumer waits for."""
    server = shmx.serve(name, specs())
    client = shmx.connect(name)
    try:
        proc = SPAWN.Process(target=_ask_over_control, args=(name, 0.2, [11]))
        proc.start()
        assert server.wait_control(timeout=10)
        msgs = []
        deadline = time.monotonic() + 5
        while not msgs and time.monotonic() < deadline:
            msgs = server.poll_control()
        assert [struct.unpack("<Q", m["data"])[0] for m in msgs] == [11]
        server.publish({"seq": msgs[0]["data"]})
        frame = client.wait_frame(timeout=5)
        assert frame is not None and bytes(frame["seq"]["data"]) == msgs[0]["data"]
        proc.join(10)
        assert proc.exitcode == 0
    finally:
        client.close()
        server.destroy()


def test_wait_control_times_out(name):
    with shmx.serve(name, specs()) as server:
        assert server.wait_control(timeout=0.05) is False


def test_connect_waits_for_server_to_appear(name):
    proc = SPAWN.Process(target=_publish_later, args=(name, 0.3, [1, 2, 3, 4, 5, 6]))
    proc.start()
    try:
        client = shmx.connect(name, timeout=10)
        with client:
            frame = client.wait_frame(timeout=10)
            assert frame is not None
            assert struct.unpack("<Q", frame["seq"]["data"])[0] >= 1
    finally:
        proc.join(15)
    assert proc.exitcode == 0


def test_connect_timeout_raises_builtin_compatible(name):
    with pytest.raises(FileNotFoundError) as info:
        shmx.connect(name, timeout=0.05)
    assert isinstance(info.value, shmx.RegionNotFoundError)
    assert name in str(info.value)


def test_serve_on_live_name_raises_file_exists(name):
    with shmx.serve(name, specs()):
        with pytest.raises(FileExistsError) as info:
            shmx.serve(name, specs())
        assert str(os.getpid()) in str(info.value)
        assert isinstance(info.value, shmx.ShmxError)


def test_serve_bad_config_raises_value_error(name):
    with pytest.raises(ValueError):
        shmx.serve(name, specs(), slots=0)


def test_frames_iterator_yields_each_new_frame_once(name):
    with shmx.serve(name, specs()) as server, shmx.connect(name) as client:
        seen = []
        for i in range(1, 6):
            server.publish({"seq": struct.pack("<Q", i)})
            frame = next(client.frames(timeout=2))
            seen.append(frame["__metadata__"]["frame_id"])
        assert seen == [1, 2, 3, 4, 5]
        # No new frame: the iterator ends at the timeout instead of repeating.
        assert list(client.frames(timeout=0.05)) == []


def test_read_next_reports_exact_drops(name):
    with shmx.serve(name, specs(), slots=4) as server, shmx.connect(name) as client:
        server.publish({"seq": struct.pack("<Q", 1)})
        first = client.read_next()
        assert first["__metadata__"]["frame_id"] == 1
        # Frames 2..11.  Our pin keeps frame 1's slot, so the writer cycles
        # through the other 3 slots: 9, 10, 11 survive, 2..8 are lost, and
        # the lapped reader passes over a quarter of the ring (frame 9).
        for i in range(2, 12):
            server.publish({"seq": struct.pack("<Q", i)})
        assert struct.unpack("<Q", first["seq"]["data"])[0] == 1  # pinned: intact
        nxt = client.read_next()
        meta = nxt["__metadata__"]
        assert meta["frame_id"] == 10 and meta["dropped"] == 8
        ids = [meta["frame_id"]]
        while True:
            f = client.read_next()
            if f is None:
                break
            assert f["__metadata__"]["dropped"] == 0
            ids.append(f["__metadata__"]["frame_id"])
        assert ids == [10, 11]


def test_wait_next_gets_every_frame_in_order(name):
    with shmx.serve(name, specs(), slots=8) as server, shmx.connect(name) as client:
        server.publish({"seq": struct.pack("<Q", 0)})
        assert client.wait_next(timeout=1)["__metadata__"]["frame_id"] == 1
        for i in range(1, 6):
            server.publish({"seq": struct.pack("<Q", i)})
        got = [client.wait_next(timeout=1)["__metadata__"]["frame_id"] for _ in range(5)]
        assert got == [2, 3, 4, 5, 6]
        assert client.wait_next(timeout=0.05) is None


def test_loan_zero_copy_publish_and_refusal_after_publish(name):
    with shmx.serve(name, specs(), frame_bytes_cap=1 << 20) as server, shmx.connect(name) as client:
        frame = server.begin_frame()
        view = server.loan(frame, 3, 4096)
        assert len(view) == 4096 and not view.readonly
        view[:] = bytes(range(256)) * 16
        assert server.publish_frame(frame, 1.5)
        with pytest.raises(ValueError):  # released at publish
            view[0] = 1
        got = client.get_latest_frame()
        assert bytes(got["img"]["data"]) == bytes(range(256)) * 16
        # A finished handle cannot lend.
        with pytest.raises(ValueError) as info:
            server.loan(frame, 3, 16)
        assert "finished" in str(info.value)
        # A handle of another server neither.
        other = shmx.Server()
        try:
            assert other.create(name + "-b", streams=specs())
            foreign = other.begin_frame()
            with pytest.raises(shmx.InvalidArgumentError) as info:
                server.loan(foreign, 3, 16)
            assert "another server" in str(info.value)
        finally:
            other.destroy()


def test_loan_array_shaped_by_schema_and_frozen_after_publish(name):
    with shmx.serve(name, specs()) as server, shmx.connect(name) as client:
        frame = server.begin_frame()
        pos = server.loan_array(frame, 2, 100)
        assert pos.shape == (100, 3) and pos.dtype == np.float32
        pos[:] = np.arange(300, dtype=np.float32).reshape(100, 3)
        assert server.publish_frame(frame, 0.0)
        with pytest.raises(ValueError):
            pos[0, 0] = 5
        arrays = client.get_latest_arrays()
        assert arrays["pos"].shape == (100, 3)
        assert np.array_equal(arrays["pos"], np.arange(300, dtype=np.float32).reshape(100, 3))
        assert not arrays["pos"].flags.writeable


def test_publish_dict_by_id_and_name_and_errors(name):
    with shmx.serve(name, specs()) as server, shmx.connect(name) as client:
        server.publish({np.int64(1): struct.pack("<Q", 5), "pos": np.ones((2, 3), np.float32)}, 2.0)
        f = client.get_latest_frame()
        assert f["pos"]["elem_count"] == 2 and f["__metadata__"]["sim_time"] == 2.0
        with pytest.raises(ValueError) as info:
            server.publish({"nope": b"x"})
        assert "nope" in str(info.value)
        with pytest.raises(ValueError):
            server.publish({"pos": b"12345"})  # not a whole number of 12-byte elements
        with pytest.raises(ValueError):
            server.publish({"img": b"x" * 70000})  # over frame_bytes_cap


def test_publish_stream_kept_past_destroy_fails_cleanly(name):
    # server.publish_stream is the instance's own fast closure; one kept
    # (like a producer's functools.partial) must not reach freed memory.
    server = shmx.Server()
    assert server.create(name, streams=specs())
    pub = functools.partial(server.publish_stream, "seq")
    pub(struct.pack("<Q", 1))
    with shmx.connect(name) as client:
        assert bytes(client.get_latest_stream("seq")) == struct.pack("<Q", 1)
    server.destroy()
    for _ in range(2):
        with pytest.raises(shmx.ServerGoneError) as info:
            pub(struct.pack("<Q", 2))
        assert "destroyed" in str(info.value)
    with pytest.raises(shmx.ShmxError):
        server.publish_stream(1, struct.pack("<Q", 3))  # the class method again
    assert not os.path.exists(f"/dev/shm/{name}")
    del info  # its traceback refers to the server
    # Kept across a new create(): publishes into the new region.
    assert server.create(name, streams=specs())
    pub(struct.pack("<Q", 4))
    with shmx.connect(name) as client:
        assert bytes(client.get_latest_stream("seq")) == struct.pack("<Q", 4)
    with pytest.raises(shmx.InvalidArgumentError, match="bool"):
        server.publish_stream(True, struct.pack("<Q", 5))  # an id is an int, not a bool
    for bad_id in (-1, 2**32):
        with pytest.raises(shmx.InvalidArgumentError):
            server.publish_stream(bad_id, struct.pack("<Q", 5))
    # Dropped without destroy(): no reference cycle keeps it; freed at once.
    ref = weakref.ref(server)
    with pytest.warns(ResourceWarning):
        del server
    assert ref() is None and not os.path.exists(f"/dev/shm/{name}")
    with pytest.raises(shmx.ServerGoneError, match="garbage-collected"):
        pub(struct.pack("<Q", 6))
    del pub
    gc.collect()


def test_overridden_fast_methods_are_kept(name):
    # The per-instance fast paths must not hide a subclass's own methods.
    class Stamping(shmx.Server):
        def publish_stream(self, stream, data, sim_time=0.0):
            super().publish_stream(stream, data, 42.0)

    class Counting(shmx.Client):
        calls = 0

        def get_latest_stream(self, stream, new_only=False):
            self.calls += 1
            return super().get_latest_stream(stream, new_only)

    with Stamping() as server, Counting() as client:
        assert server.create(name, streams=specs())
        assert client.open(name)
        server.publish_stream("seq", struct.pack("<Q", 1))
        assert bytes(client.get_latest_stream("seq", new_only=None)) == struct.pack("<Q", 1)
        assert client.calls == 1 and client.sim_time == 42.0
        assert client.get_latest_stream(1, True) is None and client.calls == 2
        assert client.get_latest_stream("nope") is None and "no stream 'nope'" in client.last_error


def test_get_latest_stream_kept_past_close_fails_cleanly(name):
    # client.get_latest_stream is the connection's own closure (the polling
    # read); one kept past close() or reconnect() must not reach freed memory.
    with shmx.serve(name, specs()) as server:
        client = shmx.Client()
        assert client.open(name)
        poll = functools.partial(client.get_latest_stream, "seq", True)
        assert poll() is None and client.last_error
        server.publish_stream("seq", struct.pack("<Q", 5))
        assert bytes(poll()) == struct.pack("<Q", 5) and client.frame_id == 1
        assert poll() is None
        assert bytes(shmx.Client.get_latest_stream(client, 1)) == struct.pack("<Q", 5)
        assert client.get_latest_stream("nope") is None and "no stream 'nope'" in client.last_error
        client.close()
        server.publish_stream("seq", struct.pack("<Q", 6))
        assert poll() is None and "closed" in client.last_error
        assert client.get_latest_stream("seq") is None and "not open" in client.last_error
        assert client.open(name)
        assert bytes(client.get_latest_stream("seq")) == struct.pack("<Q", 6)
        # Kept across the reopen: reads the new connection.
        server.publish_stream("seq", struct.pack("<Q", 7))
        assert bytes(poll()) == struct.pack("<Q", 7) and poll() is None
        ref = weakref.ref(client)
        del client  # no reference cycle: gone at once, reader slot freed
        assert ref() is None
        assert server.get_header_info()["readers_connected"] == 0
        del poll
        gc.collect()


def test_publish_stream_one_call_and_refusals_keep_the_latest_frame(name):
    # One slot: a refusal that claimed a slot would destroy the only frame.
    with shmx.serve(name, specs(), slots=1) as server, shmx.connect(name) as client:
        server.publish_stream("pos", np.arange(6, dtype=np.float32).reshape(2, 3), 4.5)
        f = client.get_latest_frame()
        assert f["pos"]["elem_count"] == 2 and f["__metadata__"]["sim_time"] == 4.5
        assert sorted(f) == ["__metadata__", "pos"]
        assert bytes(f["pos"]["data"]) == np.arange(6, dtype=np.float32).tobytes()
        client.release()
        server.publish_stream(1, struct.pack("<Q", 99))
        client.release()
        good = client.get_latest_frame()
        assert bytes(good["seq"]["data"]) == struct.pack("<Q", 99)
        good_id = good["__metadata__"]["frame_id"]
        client.release()
        bad = [("nope", b"x", shmx.InvalidArgumentError, "nope"),
               (9, b"x" * 8, shmx.InvalidArgumentError, "stream id 9"),
               ("pos", b"12345", shmx.InvalidArgumentError, "12-byte"),
               ("img", b"x" * 70000, shmx.InvalidArgumentError, "frame_bytes_cap"),
               ("img", [1, 2], shmx.InvalidArgumentError, "buffer"),
               (1.5, b"x" * 8, shmx.InvalidArgumentError, "float")]
        for key, data, exc, words in bad:
            for _ in range(3):  # more times than there are slots
                with pytest.raises(exc) as info:
                    server.publish_stream(key, data)
                assert words in str(info.value), (key, info.value)
        # publish() with several streams checks them all before it takes a slot.
        bad_dicts = [({1: b"x" * 8, "nope": b""}, "nope"), ({1: b"x" * 8, "seq": b"y" * 8}, "twice"),
                     ({1: b"x" * 8, "pos": b"12345"}, "12-byte"),
                     ({1: b"x" * 8, "img": b"x" * 70000}, "frame_bytes_cap"),
                     ({1: b"x" * 8, "img": [1]}, "buffer"),
                     ({"pos": b"\0" * 65532, "img": b"x" * 100}, "slot holds")]
        for streams, words in bad_dicts:
            with pytest.raises(shmx.InvalidArgumentError) as info:
                server.publish(streams)
            assert words in str(info.value), (streams.keys(), info.value)
        again = client.get_latest_frame()
        assert again["__metadata__"]["frame_id"] == good_id
        assert bytes(again["seq"]["data"]) == struct.pack("<Q", 99)
        # A frame left open is abandoned, as by begin_frame(); its loan is revoked.
        client.release()
        frame = server.begin_frame()
        view = server.loan(frame, 3, 4)
        server.publish({"seq": struct.pack("<Q", 100)})  # one stream: publish_stream
        with pytest.raises(ValueError):
            view[0] = 1
        assert not server.publish_frame(frame, 0.0) and "finished" in server.last_error
        client.release()
        assert bytes(client.get_latest_frame()["seq"]["data"]) == struct.pack("<Q", 100)
    with pytest.raises(shmx.ShmxError) as info:
        server.publish_stream(1, struct.pack("<Q", 1))
    assert "destroyed" in str(info.value) or "not created" in str(info.value)


def test_get_latest_stream_new_only_frame_id_and_same_dict_while_unchanged(name):
    with shmx.serve(name, specs(), slots=4) as server, shmx.connect(name) as client:
        assert client.frame_id == 0
        assert client.get_latest_stream("seq") is None and "no frame" in client.last_error
        server.publish({"seq": struct.pack("<Q", 1), "pos": np.ones((1, 3), np.float32)}, 1.25)
        view = client.get_latest_stream("seq", new_only=True)
        assert bytes(view) == struct.pack("<Q", 1) and view.readonly
        assert client.frame_id == 1 and client.sim_time == 1.25
        assert bytes(client.get_latest_stream(2)) == np.ones(3, np.float32).tobytes()
        assert client.get_latest_stream("img") is None and "no stream 'img'" in client.last_error
        client.last_error = ""
        assert client.get_latest_stream("seq", new_only=True) is None  # nothing newer
        assert client.last_error == ""
        assert bytes(client.get_latest_stream("seq")) == struct.pack("<Q", 1)  # without new_only: again
        for v in range(2, 12):  # around the ring several times; the pin holds the view
            server.publish_stream("seq", struct.pack("<Q", v), float(v))
            got = client.get_latest_stream("seq", True)
            assert bytes(got) == struct.pack("<Q", v) and client.frame_id == v and client.sim_time == v
            assert client.get_latest_stream("seq", True) is None
        server.publish_stream("seq", struct.pack("<Q", 12))
        server.publish_stream("seq", struct.pack("<Q", 13))
        assert bytes(client.get_latest_stream("seq", True)) == struct.pack("<Q", 13)  # the newest
        # get_latest_frame: one dict per frame, returned again while unchanged.
        a = client.get_latest_frame()
        assert client.get_latest_frame() is a
        server.publish_stream("seq", struct.pack("<Q", 14))
        b = client.get_latest_frame()
        assert b is not a and b["__metadata__"]["frame_id"] == 14
        assert a["__metadata__"]["frame_id"] == 13  # the old dict is not rewritten
        server.publish_stream("seq", struct.pack("<Q", 15))
        server.publish_stream("seq", struct.pack("<Q", 16))
        assert client.read_next()["__metadata__"]["frame_id"] == 15
        r = client.read_next()
        c = client.get_latest_frame()  # the frame read_next returned, in its own dict
        assert c is not r and c["__metadata__"]["frame_id"] == 16 == r["__metadata__"]["frame_id"]
        # A new session restarts frame ids: not mistaken for the old frames.
    with shmx.serve(name, specs()) as server2:
        assert client.reconnect() and client.frame_id == 0
        server2.publish_stream("seq", struct.pack("<Q", 77))
        assert bytes(client.get_latest_stream("seq", True)) == struct.pack("<Q", 77)
        assert client.frame_id == 1
        client.close()
        assert client.get_latest_stream("seq", True) is None and "not open" in client.last_error


def test_numpy_arrays_typed_read_only(name):
    streams = [shmx.create_stream_spec(i + 1, n, code, comps, bpe) for i, (n, code, comps, bpe) in
               enumerate([("b", shmx.DT_BOOL, 1, 1), ("i16", shmx.DT_I16, 2, 4),
                          ("u32", shmx.DT_U32, 1, 4), ("f64", shmx.DT_F64, 4, 32),
                          ("h", shmx.DT_F16, 1, 2), ("bf", shmx.DT_BF16, 1, 2)])]
    data = {"b": np.array([1, 0, 1], np.bool_), "i16": np.arange(6, dtype=np.int16),
            "u32": np.arange(5, dtype=np.uint32), "f64": np.arange(8, dtype=np.float64),
            "h": np.array([1.5, 2.5], np.float16), "bf": np.array([0x3F80], np.uint16)}
    with shmx.serve(name, streams) as server, shmx.connect(name) as client:
        server.publish(data)
        arrs = client.get_latest_arrays()
        assert arrs["b"].dtype == np.bool_ and arrs["b"].tolist() == [True, False, True]
        assert arrs["i16"].shape == (3, 2) and arrs["i16"].dtype == np.int16
        assert arrs["u32"].shape == (5,) and arrs["u32"].dtype == np.uint32
        assert arrs["f64"].shape == (2, 4) and arrs["f64"][1, 3] == 7.0
        assert arrs["h"].dtype == np.float16 and arrs["h"].tolist() == [1.5, 2.5]
        assert arrs["bf"].dtype == np.uint16  # bf16 as bit patterns
        assert "__metadata__" not in arrs  # arrays only
        for a in arrs.values():
            if hasattr(a, "flags"):
                assert not a.flags.writeable


def test_unclosed_objects_warn(name):
    server = shmx.serve(name, specs())
    client = shmx.connect(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
        del server
        gc.collect()
    kinds = [w.category for w in caught]
    assert kinds.count(ResourceWarning) == 2
    assert not os.path.exists(os.path.join(shmx.default_shm_dir(), name))


def test_asyncio_frames_do_not_block_the_loop(name):
    async def main():
        server = shmx.serve(name, specs())
        client = shmx.connect(name)
        ticks = 0
        got = []

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        async def producer():
            for i in range(1, 4):
                await asyncio.sleep(0.1)
                server.publish({"seq": struct.pack("<Q", i)})

        t = asyncio.create_task(ticker())
        p = asyncio.create_task(producer())
        try:
            async for frame in client.aframes(timeout=2):
                got.append(struct.unpack("<Q", frame["seq"]["data"])[0])
                if len(got) == 3:
                    break
            assert await client.await_frame(timeout=0.05) is None
        finally:
            t.cancel()
            await p
            client.close()
            server.destroy()
        return ticks, got

    ticks, got = asyncio.run(main())
    assert got == [1, 2, 3]
    assert ticks > 10  # the loop kept running while we waited


CTRL_C_CHILD = r"""
import sys, time, shmx
server = shmx.serve(sys.argv[1], [shmx.create_stream_spec(1, "x", shmx.DT_U8, 1, 1)])
client = shmx.connect(sys.argv[1])
print("waiting", flush=True)
try:
    client.wait_frame(timeout=None)
except KeyboardInterrupt:
    print("interrupted", flush=True)
finally:
    client.close()
    server.destroy()
"""


def test_ctrl_c_interrupts_a_blocked_wait(name):
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD, name], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupted" in out
    assert proc.returncode == 0


def test_waiting_on_a_region_without_extension_polls(name, tmp_path):
    """A region that lacks our extension block (as shmx 1.0.1 makes them) is
    read by polling: waiting still works, just without the futex."""
    d = str(tmp_path)
    server = shmx.Server()
    assert server.create(name, streams=specs(), shm_dir=d, checksum="always")
    path = os.path.join(d, name)
    with open(path, "r+b") as f:  # hide the extension from new readers
        f.seek(128)
        f.write(b"\0" * 8)
    client = shmx.Client()
    try:
        assert client.open(name, shm_dir=d)
        assert client.get_header_info()["extended"] is False
        server.publish({"seq": struct.pack("<Q", 9)})
        frame = client.wait_frame(timeout=5)
        assert frame is not None and struct.unpack("<Q", frame["seq"]["data"])[0] == 9
        assert client.wait_frame(timeout=0.05) is None
    finally:
        client.close()
        server.destroy()
