"""read_next, get_latest_frame and read_next_stream as the Client's own builtins
(bindings/hot_client.h): the same answers as the Python methods, the same
last_error on a refusal, and safe when kept past close() or the Client."""
from __future__ import annotations

import gc
import inspect
import struct
import warnings

import pytest

import shmx
from shmx import _client_hot
from shmx._shmx import lib

pytestmark = pytest.mark.skipif(not _client_hot._HAVE_HOT, reason="ABI-mode build: no builtins")


def specs():
    return [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
            shmx.create_stream_spec(2, "pos", shmx.DT_F32, 3, 12)]


def publish(server: shmx.Server, i: int, with_pos: bool = True) -> None:
    streams = {"seq": struct.pack("<Q", i)}
    if with_pos:
        streams["pos"] = struct.pack("<3f", i, i + 0.5, -i)
    server.publish(streams, sim_time=i * 0.25)


def plain(frame):
    """A frame dict with its views as bytes (comparable)."""
    return {k: ({**v, "data": bytes(v["data"])} if k != "__metadata__" else dict(v)) for k, v in frame.items()}


def test_the_reads_are_builtins_giving_what_the_methods_give(name):
    with shmx.serve(name, specs(), slots=4) as server, shmx.Client() as hot, shmx.Client() as ref:
        assert hot.open(name) and ref.open(name)
        for n in ("read_next", "get_latest_frame"):
            assert type(hot.__dict__[n]).__name__ == "builtin_function_or_method"
            assert hot.__dict__[n].__doc__ == inspect.getdoc(getattr(shmx.Client, n))
        # Frames over every slot, two layouts (with and without `pos`), so
        # both the cached-layout path and the first-seen one run.
        for i in range(1, 15):
            publish(server, i, with_pos=i % 3 != 0)
            got, want = hot.read_next(), shmx.Client.read_next(ref)
            assert plain(got) == plain(want)
            assert got["__metadata__"]["frame_id"] == i and got["__metadata__"]["dropped"] == 0
            assert got["__metadata__"]["sim_time"] == i * 0.25
            assert bytes(got["seq"]["data"]) == struct.pack("<Q", i)
            assert ("pos" in got) == (i % 3 != 0)
            latest, latest_ref = hot.get_latest_frame(), shmx.Client.get_latest_frame(ref)
            assert plain(latest) == plain(latest_ref)
            assert hot.get_latest_frame() is latest  # unchanged frame: the same dict
            assert hot.frame_id == i and hot.sim_time == i * 0.25


def test_a_refusal_sets_last_error_as_the_method_does(name):
    with shmx.serve(name, specs()) as server, shmx.Client() as client:
        assert client.open(name)
        assert client.read_next() is None and "no frame published yet" in client.last_error
        assert client.get_latest_frame() is None and client.last_error
        publish(server, 1)
        assert client.read_next()["__metadata__"]["frame_id"] == 1
        client.last_error = ""
        assert client.read_next() is None
        assert "no frame after 1" in client.last_error and client._last_status == lib.SHMX_EAGAIN
        assert isinstance(client.last_error, str)  # decoded on first read


def test_kept_reads_past_close_and_past_the_client(name):
    with shmx.serve(name, specs()) as server:
        client = shmx.Client()
        assert client.open(name)
        nxt, latest = client.read_next, client.get_latest_frame
        publish(server, 1)
        assert nxt()["__metadata__"]["frame_id"] == 1
        client.close()
        assert nxt() is None and latest() is None and "not open" in client.last_error
        assert client.open(name)  # the same builtins serve the new connection
        assert latest()["__metadata__"]["frame_id"] == 1 and client.read_next is nxt
        publish(server, 2)
        assert nxt()["__metadata__"]["frame_id"] == 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del client
            gc.collect()
        with pytest.raises(shmx.ShmxError, match="garbage-collected"):
            nxt()


def test_a_subclass_keeps_its_own_reads(name):
    class Counting(shmx.Client):
        calls = 0

        def read_next(self):
            self.calls += 1
            return super().read_next()

    with shmx.serve(name, specs()) as server, Counting() as client:
        assert client.open(name)
        assert "read_next" not in client.__dict__ and "get_latest_frame" in client.__dict__
        publish(server, 1)
        assert client.read_next()["__metadata__"]["frame_id"] == 1 and client.calls == 1


def test_a_lapped_reader_resumes_a_quarter_ring_past_the_oldest_frame_left(name):
    # Nothing pinned and small frames: ring order, so read_next finds the
    # frames left from write_index without reading every slot, and passes
    # over the quarter of them the producer rewrites first.
    with shmx.serve(name, specs(), slots=8) as server, shmx.Client() as client:
        assert client.open(name)
        publish(server, 1)
        assert client.read_next()["__metadata__"]["frame_id"] == 1
        client.release()
        for i in range(2, 102):
            publish(server, i)
        frame = client.read_next()
        # 101 frames in 8 slots, the slot after the newest being the next
        # to write: frames 94..101 are left, and 94 and 95 are passed over.
        assert (frame["__metadata__"]["frame_id"], frame["__metadata__"]["dropped"]) == (96, 94)
        assert bytes(frame["seq"]["data"]) == struct.pack("<Q", 96)
        assert (client.dropped, client.dropped_total) == (94, 94)
        ids = [client.read_next()["__metadata__"]["frame_id"] for _ in range(5)]
        assert ids == list(range(97, 102)) and client.read_next() is None
        assert (client.dropped, client.dropped_total) == (0, 94)


def test_read_next_stream_is_read_next_without_the_dicts(name):
    # The builtin and the Python method (what an ABI-mode build runs) give
    # the same views, ids and counts, in order, over two layouts.
    with shmx.serve(name, specs(), slots=8) as server, shmx.Client() as hot, shmx.Client() as ref:
        assert hot.open(name) and ref.open(name)
        assert type(hot.__dict__["read_next_stream"]).__name__ == "builtin_function_or_method"
        assert hot.__dict__["read_next_stream"].__doc__ == inspect.getdoc(shmx.Client.read_next_stream)
        publish(server, 1)
        for c, read in ((hot, hot.read_next_stream), (ref, lambda s: shmx.Client.read_next_stream(ref, s))):
            assert bytes(read("seq")) == struct.pack("<Q", 1) and c.frame_id == 1
            c.last_error = "untouched"
            assert read("seq") is None and c.last_error == "untouched"  # nothing new: not a failure
        for i in range(2, 7):
            publish(server, i, with_pos=i % 2 == 0)
        for c, read in ((hot, hot.read_next_stream), (ref, lambda s: shmx.Client.read_next_stream(ref, s))):
            for i in range(2, 7):
                key = 2 if i % 2 == 0 else "seq"  # by id on frames with pos, by name on the others
                want = struct.pack("<3f", i, i + 0.5, -i) if key == 2 else struct.pack("<Q", i)
                assert bytes(read(key)) == want
                assert (c.frame_id, c.sim_time, c.dropped, c.backlog) == (i, i * 0.25, 0, 6 - i)
            assert read("seq") is None
        publish(server, 7, with_pos=False)
        for c, read in ((hot, hot.read_next_stream), (ref, lambda s: shmx.Client.read_next_stream(ref, s))):
            assert read("pos") is None and "read_next_stream: frame 7 has no stream 'pos'" in c.last_error
            assert c.frame_id == 7  # the frame was read: the next call moves on
        with pytest.raises(TypeError, match="exactly one positional argument"):
            hot.read_next_stream()
        publish(server, 8)
        with pytest.raises(TypeError):
            hot.read_next_stream([1])  # unhashable (looked up once a frame is there)
        kept = hot.read_next_stream
    assert kept("seq") is None and "not open" in hot.last_error


def test_read_next_stream_counts_every_frame_a_slow_reader_lost(name):
    # A reader lapped over and over: each frame it gets carries its seq in
    # place, dropped is exactly the gap, dropped_total their sum.
    with shmx.serve(name, specs(), slots=8) as server, shmx.Client() as client:
        assert client.open(name)
        publish(server, 1)
        assert client.read_next_stream("seq") is not None
        last, lost = 1, 0
        for burst in (3, 20, 7, 64, 1, 9):
            for _ in range(burst):
                last_published = server.get_header_info()["frame_seq"] + 1
                publish(server, last_published)
            while (view := client.read_next_stream("seq")) is not None:
                fid = struct.unpack("<Q", view)[0]
                assert fid == client.frame_id and fid > last
                assert client.dropped == fid - last - 1
                lost += client.dropped
                last = fid
            assert last == last_published and client.dropped_total == lost and client.backlog == 0
        assert lost > 0


def test_wait_frame_is_a_builtin_and_answers_as_the_method(name):
    # Its first slice is the builtin's own; a longer wait, a bad timeout or
    # a closed client go on in Python: the same answers and last_error.
    with shmx.serve(name, specs(), slots=4) as server, shmx.Client() as hot, shmx.Client() as ref:
        assert hot.open(name) and ref.open(name)
        wait = hot.__dict__["wait_frame"]
        assert type(wait).__name__ == "builtin_function_or_method"
        assert wait.__doc__ == inspect.getdoc(shmx.Client.wait_frame)
        for c, w in ((hot, hot.wait_frame), (ref, lambda *a, **k: shmx.Client.wait_frame(ref, *a, **k))):
            assert w(0.01) is None and c.last_error == f"wait: no new frame in '{name}' within 0.01 s"
            assert w(timeout=0) is None and "within 0.0 s" in c.last_error
            assert w(0.12) is None and "within 0.12 s" in c.last_error  # past the first slice
            for bad in (-1.0, float("nan"), "1", True):
                with pytest.raises((shmx.InvalidArgumentError, TypeError)):
                    w(bad)
            with pytest.raises(TypeError):
                w(1.0, 2.0)
        publish(server, 1)
        got, want = hot.wait_frame(1), shmx.Client.wait_frame(ref, 1.0)
        assert plain(got) == plain(want) and got["__metadata__"]["frame_id"] == 1
        assert hot.get_latest_frame() is got  # the frame it returned is the latest read
        publish(server, 2)
        assert hot.wait_frame(None)["__metadata__"]["frame_id"] == 2
        # A frame published while it sleeps wakes it (the threads take turns).
        import threading
        timer = threading.Timer(0.02, publish, (server, 3))
        timer.start()
        assert hot.wait_frame(2.0)["__metadata__"]["frame_id"] == 3
        timer.join()
        hot.close()
        assert wait(0.01) is None and "not open" in hot.last_error


def test_a_kept_wait_frame_past_the_client(name):
    with shmx.serve(name, specs()):
        client = shmx.Client()
        assert client.open(name)
        wait = client.wait_frame
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del client
            gc.collect()
        with pytest.raises(shmx.ShmxError, match="garbage-collected"):
            wait(0.01)
